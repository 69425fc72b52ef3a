"""Photos named in capitals (`IMG_0001.HEIC`) get their image type in the page.

Why: Chromium on Linux gives a file whose extension is in capitals no MIME type, and
Gradio's image boxes refuse a file without an image type in the page, before anything is
sent ("Invalid file type"). iPhones name their photos that way. A capture-phase listener on
the page gives such files the type their extension names, before Gradio's own handler sees
them; the server reads the bytes with `load_image` whatever the name says, as everywhere.
"""

from __future__ import annotations

import json
import mimetypes

from ..imageio import READ_EXTENSIONS

# The type of each extension `load_image` reads (lower case, no dot); the standard table
# lacks some phone formats (heic, heif, avif), whose types are image/<extension>.
IMAGE_TYPES = {ext[1:]: mimetypes.types_map.get(ext, f"image/{ext[1:]}")
               for ext in sorted(READ_EXTENSIONS)}

# Runs once when the (empty) HTML block is mounted; installs one listener per page.
JS = """
const TYPES = %(types)s;
const typed = (file) => {
  const type = TYPES[file.name.split('.').pop().toLowerCase()];
  if (file.type || !type) return file;
  return new File([file], file.name, {type, lastModified: file.lastModified});
};
// The files with their types, or null when none lacked one.
const retyped = (list) => {
  const files = [...(list || [])]; const fixed = files.map(typed);
  if (fixed.every((f, i) => f === files[i])) return null;
  const data = new DataTransfer();
  for (const f of fixed) data.items.add(f);
  return data;
};
if (!window.facefuseTypesPhotos) {
  window.facefuseTypesPhotos = true;
  document.addEventListener('change', (event) => {
    const input = event.target;
    if (!(input instanceof HTMLInputElement) || input.type !== 'file') return;
    const data = retyped(input.files);
    if (data) input.files = data.files;
  }, true);
  document.addEventListener('drop', (event) => {
    const data = retyped(event.dataTransfer && event.dataTransfer.files);
    if (!data) return;
    // dataTransfer cannot be changed: the same drop again, with the typed files
    event.preventDefault(); event.stopImmediatePropagation();
    event.target.dispatchEvent(new DragEvent('drop', {bubbles: true, cancelable: true,
      composed: true, dataTransfer: data, clientX: event.clientX, clientY: event.clientY}));
  }, true);
}
"""


def build() -> None:
    """The page's listener (call once inside the Blocks; it shows nothing)."""
    import gradio as gr

    gr.HTML("", js_on_load=JS % {"types": json.dumps(IMAGE_TYPES)}, container=False,
            padding=False, elem_id="photo-types")
