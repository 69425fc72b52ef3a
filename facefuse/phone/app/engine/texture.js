// Texture: masks, colour/light match and the ratio mix, in the aligned crop
// (stages/texture.py).
import {
  blurMask, convexHull, cropBox, fillPolygon, gaussianBlur, labToRgb, makeImage, maskBox, morph,
  pasteBox, resizeArea, resizeLinear, rgbToLab,
} from './raster.js';

const ptsOf = (shape, idx) => idx.map((i) => shape[i]);
const ptp = (v) => Math.max(...v) - Math.min(...v);

function polyMask(size, pts, aa) {
  const m = makeImage(size, size, 1, Uint8Array);
  fillPolygon(m, pts.map(([x, y]) => (aa ? [x, y] : [Math.round(x), Math.round(y)])), 255, aa);
  return m;
}

/** The region parameters that leave the face mask as the landmarks give it. */
export const NO_REGION = Object.freeze({scale: 1, rotation: 0, offset_x: 0, offset_y: 0});

export const isNoRegion = (r) => r.scale === 1 && r.rotation === 0 && r.offset_x === 0 && r.offset_y === 0;

/** Soft face mask (0..1): the oval pulled in at the forehead, feathered inward. */
export function faceMask(shape, size, region, contract) {
  const M = contract.mesh;
  const oval = ptsOf(shape, M.FACE_OVAL_LOOP);
  const brows = ptsOf(shape, M.LEFT_BROW_POINTS.concat(M.RIGHT_BROW_POINTS));
  const browY = brows.reduce((s, p) => s + p[1], 0) / brows.length;
  const cx = oval.reduce((s, p) => s + p[0], 0) / oval.length;
  const cy = oval.reduce((s, p) => s + p[1], 0) / oval.length;
  let pulled = oval.map(([x, y]) => [cx + 0.94 * (x - cx), cy + 0.94 * (y - cy)]);
  pulled = pulled.map(([x, y]) => (y < browY ? [x, browY + 0.8 * (y - browY)] : [x, y]));
  const width = ptp(oval.map((p) => p[0])); const height = ptp(oval.map((p) => p[1]));
  if (!isNoRegion(region)) {
    // cv2.getRotationMatrix2D(centre, -rotation, scale) plus the offset.
    const a = (-region.rotation * Math.PI) / 180;
    const al = region.scale * Math.cos(a); const be = region.scale * Math.sin(a);
    const tx = (1 - al) * cx - be * cy + region.offset_x * width;
    const ty = be * cx + (1 - al) * cy + region.offset_y * height;
    pulled = pulled.map(([x, y]) => [al * x + be * y + tx, -be * x + al * y + ty]);
  }
  const half = Math.floor(size / 2);
  let hard = polyMask(half, pulled.map(([x, y]) => [x / 2, y / 2]), true);
  const feather = Math.max(2, Math.round(0.03 * width));
  hard = morph(hard, feather, false);
  const soft = blurMask(hard, feather / 2, true);
  // Most of the crop is outside the face: only the blur's box is resized and scaled.
  const big = resizeLinear(soft, size, size, soft.box ?? {x0: 0, y0: 0, x1: 0, y1: 0});
  for (let i = 0; i < big.data.length; i++) if (big.data[i] !== 0) big.data[i] /= 255;
  return big;
}

export function featureMask(shape, size, contract) {
  const M = contract.mesh;
  let mask = makeImage(size, size, 1, Uint8Array);
  for (const loop of [M.LEFT_EYE_LOOP, M.RIGHT_EYE_LOOP, M.OUTER_LIPS_LOOP]) {
    fillPolygon(mask, ptsOf(shape, loop).map(([x, y]) => [Math.round(x), Math.round(y)]), 255, false);
  }
  mask = morph(mask, Math.max(3, Math.floor(size / 64)), true);
  let brows = makeImage(size, size, 1, Uint8Array);
  for (const brow of [M.LEFT_BROW_POINTS, M.RIGHT_BROW_POINTS]) {
    const hull = convexHull(ptsOf(shape, brow).map(([x, y]) => [Math.round(x), Math.round(y)]));
    fillPolygon(brows, hull, 255, false);
  }
  brows = morph(brows, Math.max(5, Math.floor(size / 20)), true);
  for (let i = 0; i < mask.data.length; i++) mask.data[i] = Math.max(mask.data[i], brows.data[i]);
  return mask;
}

export function mouthMask(shape, size, contract) {
  let hard = polyMask(size, ptsOf(shape, contract.mesh.OUTER_LIPS_LOOP), true);
  const grow = Math.max(3, Math.floor(size / 40));
  hard = morph(hard, grow, true);
  const soft = blurMask(hard, grow / 2, true);
  for (let i = 0; i < soft.data.length; i++) soft.data[i] /= 255;
  return soft;
}

export function skinMask(shape, size, face, contract) {
  const features = featureMask(shape, size, contract);
  const out = makeImage(size, size, 1);
  for (let i = 0; i < out.data.length; i++) out.data[i] = face.data[i] * (1 - features.data[i] / 255);
  return out;
}

function maskedBlur(lab, weight, sigma) {
  const f = 8;
  const sw = Math.max(1, Math.floor(weight.w / f)); const sh = Math.max(1, Math.floor(weight.h / f));
  const num = makeImage(lab.w, lab.h, 3);
  for (let i = 0; i < weight.data.length; i++) for (let k = 0; k < 3; k++) num.data[3 * i + k] = lab.data[3 * i + k] * weight.data[i];
  const wt = gaussianBlur(resizeArea(weight, sw, sh), sigma / f);
  const nb = gaussianBlur(resizeArea(num, sw, sh), sigma / f);
  const low = makeImage(sw, sh, 3);
  for (let i = 0; i < sw * sh; i++) for (let k = 0; k < 3; k++) low.data[3 * i + k] = nb.data[3 * i + k] / Math.max(wt.data[i], 1e-4);
  return resizeLinear(low, weight.w, weight.h);
}

function weightedStats(lab, weight) {
  const sw = Math.max(1, Math.floor(weight.w / 4)); const sh = Math.max(1, Math.floor(weight.h / 4));
  const l = resizeArea(lab, sw, sh); const w = resizeArea(weight, sw, sh);
  let total = 0; const mean = [0, 0, 0]; const v = [0, 0, 0];
  for (let i = 0; i < sw * sh; i++) { total += w.data[i]; for (let k = 0; k < 3; k++) mean[k] += l.data[3 * i + k] * w.data[i]; }
  total = Math.max(total, 1e-6);
  for (let k = 0; k < 3; k++) mean[k] /= total;
  for (let i = 0; i < sw * sh; i++) for (let k = 0; k < 3; k++) v[k] += (l.data[3 * i + k] - mean[k]) ** 2 * w.data[i];
  return [mean, v.map((x) => Math.sqrt(x / total) + 1e-3)];
}

/** Source (float 0..255) recoloured and relit to the template's skin. */
export function matchColour(source, template, skin, sigma) {
  const weight = makeImage(skin.w, skin.h, 1);
  let count = 0;
  for (let i = 0; i < skin.data.length; i++) { weight.data[i] = skin.data[i] > 0.5 ? 1 : 0; count += weight.data[i]; }
  if (count < 50) return source;
  const src = rgbToLab(source); const tpl = rgbToLab(template);
  const [sm, ss] = weightedStats(src, weight); const [tm, ts] = weightedStats(tpl, weight);
  const gain = [0, 1, 2].map((k) => Math.min(2, Math.max(0.5, ts[k] / ss[k])));
  const out = makeImage(src.w, src.h, 3);
  for (let i = 0; i < src.w * src.h; i++) for (let k = 0; k < 3; k++) out.data[3 * i + k] = (src.data[3 * i + k] - sm[k]) * gain[k] + tm[k];
  const lowT = maskedBlur(tpl, weight, sigma); const lowO = maskedBlur(out, weight, sigma);
  for (let i = 0; i < out.data.length; i++) out.data[i] += lowT.data[i] - lowO.data[i];
  for (let i = 0; i < src.w * src.h; i++) out.data[3 * i] = Math.min(100, Math.max(0, out.data[3 * i]));
  const rgb = labToRgb(out);
  for (let i = 0; i < rgb.data.length; i++) rgb.data[i] = Math.min(255, Math.max(0, rgb.data[i]));
  return rgb;
}

/** Recolour the source and mix it into the template by `ratio` inside the face mask.
 * `trusts` (occlusion.js, optional): the source's and the template's trust maps, which
 * scale the weight and keep occluders out of the colour statistics. */
export function mix(srcWarped, tplWarped, shape, ratio, mouthOpen, region, contract, trusts = []) {
  const size = tplWarped.w;
  const face = faceMask(shape, size, region, contract);
  const skin = skinMask(shape, size, face, contract);
  const weight = makeImage(size, size, 1);
  let statsSkin = skin;
  const mouth = mouthOpen ? mouthMask(shape, size, contract) : null;
  for (let i = 0; i < weight.data.length; i++) {
    let v = Math.fround(ratio * face.data[i]);
    for (const t of trusts) v = Math.fround(v * t.data[i]);
    weight.data[i] = v * (mouth ? 1 - mouth.data[i] : 1);
  }
  if (trusts.length) {
    statsSkin = makeImage(size, size, 1);
    for (let i = 0; i < skin.data.length; i++) {
      let v = skin.data[i];
      for (const t of trusts) v = Math.fround(v * t.data[i]);
      statsSkin.data[i] = v;
    }
  }
  const image = {w: size, h: size, c: 3, data: new Float32Array(tplWarped.data)};
  const box = maskBox(weight, (v) => v > 0, 2);
  if (box) {
    const matched = matchColour(cropBox(srcWarped, box), cropBox(tplWarped, box), cropBox(statsSkin, box), size / 24);
    const part = cropBox(image, box); const wpart = cropBox(weight, box);
    for (let i = 0; i < wpart.data.length; i++) {
      for (let k = 0; k < 3; k++) part.data[3 * i + k] += wpart.data[i] * (matched.data[3 * i + k] - part.data[3 * i + k]);
    }
    pasteBox(image, part, box);
  }
  return {image, weight, face, skin};
}
