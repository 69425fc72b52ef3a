// Finish: mode, skin smoothing, tone, output size (stages/finish.py).
import {
  bilateral, cropBox, gaussianBlur, labToRgb, maskBox, pasteBox, resizeArea, resizeLinear, rgbToLab,
} from './raster.js';

export function applyMode(fused, template, weight, face, mode) {
  if (mode === 'normal') return fused;
  const out = {w: fused.w, h: fused.h, c: 3, data: new Float32Array(fused.data.length)};
  if (mode === 'blend') {
    const sigma = Math.max(1, fused.w / 256);
    const bt = gaussianBlur(template, sigma); const bf = gaussianBlur(fused, sigma);
    for (let i = 0; i < out.data.length; i++) {
      out.data[i] = fused.data[i] + face.data[Math.floor(i / 3)] * ((template.data[i] - bt.data[i]) - (fused.data[i] - bf.data[i]));
    }
    return out;
  }
  for (let i = 0; i < out.data.length; i++) {
    const base = template.data[i] / 255; const top = fused.data[i] / 255;
    const over = (base < 0.5 ? 2 * base * top : 1 - 2 * (1 - base) * (1 - top)) * 255;
    out.data[i] = template.data[i] + weight.data[Math.floor(i / 3)] * (over - template.data[i]);
  }
  return out;
}

export function smoothSkin(face, skin, amount) {
  if (amount <= 0) return face;
  const box = maskBox(skin, (v) => v > 0.01, 8);
  if (!box) return face;
  const patch = cropBox(face, box);
  const w = patch.w; const h = patch.h;
  const small = resizeArea(patch, Math.max(1, Math.floor(w / 2)), Math.max(1, Math.floor(h / 2)));
  const half = face.w / 1024;
  const filtered = resizeLinear(bilateral(small, Math.max(3, Math.round(18 * half) | 1), 35, 10 * half), w, h);
  const alpha = cropBox(skin, box);
  for (let i = 0; i < w * h; i++) {
    const a = amount * alpha.data[i];
    for (let k = 0; k < 3; k++) patch.data[3 * i + k] += a * (filtered.data[3 * i + k] - patch.data[3 * i + k]);
  }
  const out = {w: face.w, h: face.h, c: 3, data: new Float32Array(face.data)};
  pasteBox(out, patch, box);
  return out;
}

export function adjustTone(face, region, brightness, contrast, saturation) {
  if (brightness === 0 && contrast === 0 && saturation === 0) return face;
  const box = maskBox(region, (v) => v > 0.002, 1);
  if (!box) return face;
  const patch = cropBox(face, box); const wts = cropBox(region, box);
  const lab = rgbToLab(patch);
  let sw = 0; let sl = 0;
  for (let i = 0; i < wts.data.length; i++) { sw += wts.data[i]; sl += lab.data[3 * i] * wts.data[i]; }
  const meanL = sl / Math.max(sw, 1e-6);
  for (let i = 0; i < wts.data.length; i++) {
    const L = meanL + (lab.data[3 * i] - meanL) * (1 + contrast) + 50 * brightness;
    lab.data[3 * i] = Math.min(100, Math.max(0, L));
    lab.data[3 * i + 1] *= 1 + saturation; lab.data[3 * i + 2] *= 1 + saturation;
  }
  const rgb = labToRgb(lab);
  for (let i = 0; i < wts.data.length; i++) {
    for (let k = 0; k < 3; k++) patch.data[3 * i + k] += wts.data[i] * (rgb.data[3 * i + k] - patch.data[3 * i + k]);
  }
  const out = {w: face.w, h: face.h, c: 3, data: new Float32Array(face.data)};
  pasteBox(out, patch, box);
  return out;
}

/** 'original', or the long side in pixels (area down, bilinear up). */
export function resizeOutput(image, resolution) {
  if (resolution === 'original') return image;
  const target = Number(resolution); const long = Math.max(image.w, image.h);
  if (long === target) return image;
  const f = target / long;
  let w = Math.max(1, Math.round(image.w * f)); let h = Math.max(1, Math.round(image.h * f));
  if (Math.max(w, h) !== target) { if (image.w >= image.h) w = target; else h = target; }
  const out = f < 1 ? resizeArea(image, w, h) : resizeLinear(image, w, h);
  return {w, h, c: 3, data: Uint8ClampedArray.from(out.data, (v) => Math.round(v))};
}
