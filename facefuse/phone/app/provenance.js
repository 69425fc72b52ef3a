// The AI-generated tag in a saved file's own metadata, written on the encoded bytes like
// facefuse/imageio.py does on the desktop: an XMP packet with IPTC DigitalSourceType =
// compositeWithTrainedAlgorithmicMedia (JPEG: an APP1 segment; PNG: an iTXt chunk plus a
// tEXt "AI-generated" chunk). tests/test_phone_app.py checks XMP_PACKET equals Python's.

export const DIGITAL_SOURCE_TYPE =
  'http://cv.iptc.org/newscodes/digitalsourcetype/compositeWithTrainedAlgorithmicMedia';
export const PROVENANCE_TEXT =
  'AI-generated: face fused by facefuse (compositeWithTrainedAlgorithmicMedia)';
export const XMP_PACKET =
  '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>' +
  '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF ' +
  'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">' +
  '<rdf:Description rdf:about="" ' +
  'xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/" ' +
  'xmlns:dc="http://purl.org/dc/elements/1.1/" ' +
  'xmlns:xmp="http://ns.adobe.com/xap/1.0/" ' +
  `Iptc4xmpExt:DigitalSourceType="${DIGITAL_SOURCE_TYPE}" ` +
  'xmp:CreatorTool="facefuse">' +
  `<dc:description><rdf:Alt><rdf:li xml:lang="x-default">${PROVENANCE_TEXT}</rdf:li></rdf:Alt>` +
  '</dc:description></rdf:Description></rdf:RDF></x:xmpmeta>' +
  '<?xpacket end="w"?>';

const utf8 = new TextEncoder();
const XMP_NAMESPACE = 'http://ns.adobe.com/xap/1.0/\0';

function concat(parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}

/** JPEG: an APP1 XMP segment after SOI and any APP0 (JFIF) segment. */
export function tagJpeg(bytes) {
  if (bytes[0] !== 0xff || bytes[1] !== 0xd8) throw new Error('not a JPEG');
  const payload = concat([utf8.encode(XMP_NAMESPACE), utf8.encode(XMP_PACKET)]);
  const length = payload.length + 2;
  const segment = concat([new Uint8Array([0xff, 0xe1, length >> 8, length & 0xff]), payload]);
  let at = 2;
  while (bytes[at] === 0xff && bytes[at + 1] === 0xe0) at += 2 + ((bytes[at + 2] << 8) | bytes[at + 3]);
  return concat([bytes.subarray(0, at), segment, bytes.subarray(at)]);
}

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

function crc32(data) {
  let c = 0xffffffff;
  for (let i = 0; i < data.length; i++) c = CRC_TABLE[(c ^ data[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function pngChunk(type, data) {
  const body = concat([utf8.encode(type), data]);
  const out = new Uint8Array(12 + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  out.set(body, 4);
  view.setUint32(8 + data.length, crc32(body));
  return out;
}

/** PNG: iTXt XML:com.adobe.xmp and tEXt AI-generated=true, right after IHDR. */
export function tagPng(bytes) {
  const signature = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
  if (!signature.every((b, i) => bytes[i] === b)) throw new Error('not a PNG');
  const ihdrEnd = 8 + 12 + new DataView(bytes.buffer, bytes.byteOffset).getUint32(8);
  const itxt = pngChunk('iTXt', concat([utf8.encode('XML:com.adobe.xmp'),
    new Uint8Array([0, 0, 0, 0, 0]), utf8.encode(XMP_PACKET)]));
  const flag = pngChunk('tEXt', utf8.encode('AI-generated\0true'));
  const note = pngChunk('tEXt', utf8.encode(`Description\0${PROVENANCE_TEXT}`));
  return concat([bytes.subarray(0, ihdrEnd), itxt, flag, note, bytes.subarray(ihdrEnd)]);
}

/** A canvas encoded as JPEG or PNG with the tag in it, as a Blob ready to save or share. */
export async function taggedBlob(canvas, type = 'image/jpeg', quality = 0.95) {
  const plain = await new Promise((resolve, reject) => canvas.toBlob(
    (blob) => (blob ? resolve(blob) : reject(new Error('could not encode the result'))),
    type, quality));
  const bytes = new Uint8Array(await plain.arrayBuffer());
  const tagged = type === 'image/png' ? tagPng(bytes) : tagJpeg(bytes);
  return new Blob([tagged], { type });
}
