"""Photos named in capitals (`IMG_0001.HEIC`) get their image type in the page.

Why: Chromium on Linux gives a file whose extension is in capitals no MIME type, and
Gradio's image boxes refuse a file without an image type in the page, before anything is
sent ("Invalid file type"). iPhones name their photos that way. A capture-phase listener on
the page gives such files the type their extension names, before Gradio's own handler sees
them; the server reads the bytes with `load_image` whatever the name says, as everywhere.
"""

from __future__ import annotations

import json

# The types of what `load_image` reads (imageio.READ_EXTENSIONS), by extension, lower case.
IMAGE_TYPES = {"jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png",
               "webp": "image/webp", "bmp": "image/bmp", "tif": "image/tiff",
               "tiff": "image/tiff", "gif": "image/gif", "heic": "image/heic",
               "heif": "image/heif", "avif": "image/avif"}

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
  const files = [...(list || [])];
  if (!files.some((f) => typed(f) !== f)) return null;
  const data = new DataTransfer();
  for (const f of files) data.items.add(typed(f));
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
