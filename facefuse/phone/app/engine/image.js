// Load: any image the browser gives us -> {w, h, c: 3, data: Uint8ClampedArray} RGB, with
// the Python side's checks and messages (facefuse/imageio.py): not an image, corrupt or
// truncated, too small, too large (from the file's header, before any pixel is decoded).
// Transparent pixels are composited on white.
import {ImageError} from './errors.js';

const SIGNATURES = [
  ['jpeg', [0xff, 0xd8, 0xff]], ['png', [0x89, 0x50, 0x4e, 0x47]], ['bmp', [0x42, 0x4d]],
  ['tiff', [0x49, 0x49, 0x2a, 0x00]], ['tiff', [0x4d, 0x4d, 0x00, 0x2a]], ['gif', [0x47, 0x49, 0x46]],
];

const ascii = (bytes, a, b) => String.fromCharCode(...bytes.subarray(a, b));

function sniff(bytes) {
  for (const [kind, sig] of SIGNATURES) if (sig.every((b, i) => bytes[i] === b)) return kind;
  if (ascii(bytes, 0, 4) === 'RIFF' && ascii(bytes, 8, 12) === 'WEBP') return 'webp';
  if (ascii(bytes, 4, 8) === 'ftyp') return 'heif'; // AVIF/HEIC: the browser may read them
  return null;
}

/** JPEG must end with its EOI marker and PNG with its IEND chunk; browsers otherwise show
 * a truncated file with a grey tail instead of failing. */
function truncation(kind, bytes) {
  let end = bytes.length;
  while (end > 2 && bytes[end - 1] === 0) end--;
  if (kind === 'jpeg' && !(bytes[end - 2] === 0xff && bytes[end - 1] === 0xd9)) {
    return 'image file is truncated (no end-of-image marker)';
  }
  if (kind === 'png') {
    const tail = String.fromCharCode(...bytes.subarray(Math.max(0, bytes.length - 12)));
    if (!tail.includes('IEND')) return 'image file is truncated (no IEND chunk)';
  }
  return null;
}

/** JPEG: the first start-of-frame segment's size (markers walked, no entropy data read). */
function jpegSize(bytes, view) {
  let at = 2;
  while (at + 9 <= bytes.length) {
    if (bytes[at] !== 0xff) return null;
    const marker = bytes[at + 1];
    if (marker === 0xff) { at++; continue; } // fill byte
    if (marker === 0x01 || (marker >= 0xd0 && marker <= 0xd8)) { at += 2; continue; }
    if (marker >= 0xc0 && marker <= 0xcf && ![0xc4, 0xc8, 0xcc].includes(marker)) {
      return [view.getUint16(at + 7), view.getUint16(at + 5)];
    }
    at += 2 + view.getUint16(at + 2);
  }
  return null;
}

/** HEIF/AVIF: the largest image spatial extent ('ispe') property in the file's meta box. */
function heifSize(bytes, view) {
  let best = null;
  const end = Math.min(bytes.length - 16, 1 << 20);
  for (let at = 4; at < end; at++) {
    if (bytes[at] !== 0x69 || ascii(bytes, at, at + 4) !== 'ispe') continue;
    const size = [view.getUint32(at + 8), view.getUint32(at + 12)];
    if (!best || size[0] * size[1] > best[0] * best[1]) best = size;
  }
  return best;
}

/** [width, height] as the file's header states them (`bytes`: the whole file or its
 * start), without decoding a pixel: a decompression bomb states its size honestly, which is
 * what makes it refusable. null where the format's header is not read here (TIFF). */
export function headerSize(bytes, kind = sniff(bytes)) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  try {
    if (kind === 'png') return [view.getUint32(16), view.getUint32(20)];
    if (kind === 'gif') return [view.getUint16(6, true), view.getUint16(8, true)];
    if (kind === 'bmp') return [Math.abs(view.getInt32(18, true)), Math.abs(view.getInt32(22, true))];
    if (kind === 'jpeg') return jpegSize(bytes, view);
    if (kind === 'heif') return heifSize(bytes, view);
    if (kind === 'webp') {
      const chunk = ascii(bytes, 12, 16);
      if (chunk === 'VP8 ') return [view.getUint16(26, true) & 0x3fff, view.getUint16(28, true) & 0x3fff];
      if (chunk === 'VP8L') {
        const bits = view.getUint32(21, true);
        return [(bits & 0x3fff) + 1, ((bits >>> 14) & 0x3fff) + 1];
      }
      if (chunk === 'VP8X') {
        const u24 = (at) => bytes[at] | (bytes[at + 1] << 8) | (bytes[at + 2] << 16);
        return [u24(24) + 1, u24(27) + 1];
      }
    }
  } catch {
    return null; // a header shorter than its format's: the decoder says what is wrong
  }
  return null;
}

export function checkSize(width, height, name, contract) {
  const {max_pixels: maxPixels, min_side: minSide} = contract.image;
  if (width * height > maxPixels) {
    throw new ImageError(`${name} is too large: ${width}x${height} = ${(width * height / 1e6).toFixed(1)} MP, the limit is ${Math.round(maxPixels / 1e6)} MP; resize it first`);
  }
  if (Math.min(width, height) < minSide) {
    throw new ImageError(`${name} is too small: ${width}x${height}, each side must be at least ${minSide} px`);
  }
}

function fromRgba(width, height, rgba) {
  const data = new Uint8ClampedArray(width * height * 3);
  for (let i = 0; i < width * height; i++) {
    const a = rgba[4 * i + 3] / 255;
    for (let k = 0; k < 3; k++) data[3 * i + k] = a === 1 ? rgba[4 * i + k] : rgba[4 * i + k] * a + 255 * (1 - a) + 0.5;
  }
  return {w: width, h: height, c: 3, data};
}

function pixelsOf(drawable, width, height) {
  const canvas = new OffscreenCanvas(width, height);
  const ctx = canvas.getContext('2d', {willReadFrequently: true});
  ctx.drawImage(drawable, 0, 0);
  return ctx.getImageData(0, 0, width, height).data;
}

/** The checks a file passes before it is decoded: an image format, not cut short, and
 * within the size limits its header states; an ImageError otherwise. Decoding first would
 * let a small file that unpacks to gigabytes (30000 x 30000 pixels in 2.6 MB) take the
 * phone's memory, or fail with the decoder's vague message. */
export async function checkFile(blob, name, contract) {
  const bytes = new Uint8Array(await blob.arrayBuffer());
  const kind = sniff(bytes);
  if (!kind) throw new ImageError(`${name} is not an image (or not a format facefuse reads: ${contract.image.read_formats})`);
  const cut = truncation(kind, bytes);
  if (cut) throw new ImageError(`${name} is corrupt or truncated: ${cut}`);
  const size = headerSize(bytes, kind);
  if (size) checkSize(size[0], size[1], name, contract);
}

/** Decode `source` (Blob/File, ImageBitmap, HTMLImageElement, canvas, ImageData, or
 * {width, height, data} RGBA) named `name` ("source", "template") in messages. */
export async function loadImage(source, name, contract) {
  if (source && source.data && source.width && source.height && !(source instanceof Blob)) {
    const {width, height, data} = source;
    if (data.length !== width * height * 4) {
      throw new ImageError(`${name}: expected RGBA pixels (width x height x 4), got ${data.length} values for ${width}x${height}`);
    }
    checkSize(width, height, name, contract);
    return fromRgba(width, height, data);
  }
  if (typeof Blob !== 'undefined' && source instanceof Blob) {
    await checkFile(source, name, contract);
    let bitmap;
    try {
      bitmap = await createImageBitmap(source, {imageOrientation: 'from-image'});
    } catch (err) {
      throw new ImageError(`${name} could not be read: ${err.message || err}`);
    }
    checkSize(bitmap.width, bitmap.height, name, contract);
    const img = fromRgba(bitmap.width, bitmap.height, pixelsOf(bitmap, bitmap.width, bitmap.height));
    bitmap.close();
    return img;
  }
  const width = source && (source.naturalWidth || source.videoWidth || source.width);
  const height = source && (source.naturalHeight || source.videoHeight || source.height);
  if (!width || !height) {
    throw new ImageError(`${name}: cannot read an image from ${source === null ? 'null' : source?.constructor?.name || typeof source}`);
  }
  checkSize(width, height, name, contract);
  return fromRgba(width, height, pixelsOf(source, width, height));
}
