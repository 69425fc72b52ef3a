// Refine: our U-Net (facefuse/models, the FP32 LiteRT file `facefuse export` writes) on
// LiteRT.js's CPU (XNNPACK in WebAssembly), with manifest.json's pre/post-processing.
// The file takes one fixed size; the crop is refined at half its side and the change
// upsampled (and weighted by the template's trust map), as stages/refine.py does.
import {compileModel, Tensor} from './litert.js';
import {BackendError} from './errors.js';
import {resizeArea, resizeLinear} from './raster.js';

/** `url`: where the model file is, when the page serves it elsewhere than contract.refiner.url
 * under `base` (the desktop WebUI serves it from the package's models folder). */
export async function loadRefiner(base, contract, url = new URL(contract.refiner.url, base).href) {
  let model;
  try {
    model = await compileModel(base, url);
  } catch (err) {
    throw new BackendError(`could not load the U-Net model ${contract.refiner.url}: ${err.message || err}`);
  }
  const side = model.getInputDetails().find((d) => d.name === 'image').shape.at(-1);
  return {model, fixedSide: side, contract};
}

/** refine_side(): half the crop, a multiple of 32 (256 for 512, 160 for 320). */
export function refineSide(cropSize, contract) {
  const m = contract.constants.size_multiple;
  return Math.max(m, Math.floor((cropSize * contract.constants.refine_side) / 512 / m) * m);
}

function padIndex(i, n) { // numpy 'reflect' (no edge repeat)
  while (i >= n) i = 2 * n - 2 - i;
  return Math.max(i, 0);
}

async function runFixed(refiner, image, mask, template) {
  const S = refiner.fixedSide; const {w, h} = image;
  const plane = S * S;
  const x = new Float32Array(3 * plane); const t = new Float32Array(3 * plane); const m = new Float32Array(plane);
  const unit = (v) => Math.min(255, Math.max(0, v)) / 255;
  const cols = Int32Array.from({length: S}, (_, xx) => padIndex(xx, w)); // per column, once
  const img = image.data; const tpl = template.data; const msk = mask.data;
  for (let yy = 0; yy < S; yy++) {
    const row = padIndex(yy, h) * w;
    for (let xx = 0, o = yy * S; xx < S; xx++, o++) {
      const i = row + cols[xx]; const p = 3 * i;
      x[o] = unit(img[p]); x[plane + o] = unit(img[p + 1]); x[2 * plane + o] = unit(img[p + 2]);
      t[o] = unit(tpl[p]); t[plane + o] = unit(tpl[p + 1]); t[2 * plane + o] = unit(tpl[p + 2]);
      m[o] = yy < h && xx < w ? Math.min(1, Math.max(0, msk[i])) : 0;
    }
  }
  const inputs = {image: new Tensor(x, [1, 3, S, S]), mask: new Tensor(m, [1, 1, S, S]),
    template: new Tensor(t, [1, 3, S, S])};
  let outputs;
  try {
    outputs = await refiner.model.run(inputs);
  } finally {
    for (const tensor of Object.values(inputs)) tensor.delete();
  }
  const result = outputs.refined || Object.values(outputs)[0];
  const y = result.toTypedArray();
  for (const tensor of Object.values(outputs)) tensor.delete();
  const out = {w, h, c: 3, data: new Float32Array(w * h * 3)};
  const o = out.data; const byte = (v) => Math.min(255, Math.max(0, v * 255));
  for (let yy = 0; yy < h; yy++) {
    for (let xx = 0, q = yy * S, p = 3 * yy * w; xx < w; xx++, q++, p += 3) {
      o[p] = byte(y[q]); o[p + 1] = byte(y[plane + q]); o[p + 2] = byte(y[2 * plane + q]);
    }
  }
  return out;
}

/** Refined crop (float 0..255) from the composite, its face mask and the template crop.
 * `gate` (a full-size 0..1 image, or null) weights the change pixel by pixel, as in
 * stages/refine.py: the pipeline passes the template's trust map, so the change upsampled
 * from the work side does not land on thin occluders kept on top (glasses rims). */
export async function refine(refiner, image, mask, template, workSide, gate = null) {
  workSide = Math.min(workSide || refiner.fixedSide, refiner.fixedSide);
  const {w, h} = image;
  let out;
  if (Math.max(w, h) <= workSide) {
    out = await runFixed(refiner, image, mask, template);
  } else {
    const f = workSide / Math.max(w, h); const m = refiner.contract.constants.size_multiple;
    const sw = Math.max(m, Math.round(w * f)); const sh = Math.max(m, Math.round(h * f));
    const small = [image, mask, template].map((a) => resizeArea(a, sw, sh));
    const refined = await runFixed(refiner, small[0], small[1], small[2]);
    for (let i = 0; i < refined.data.length; i++) refined.data[i] -= small[0].data[i];
    const change = resizeLinear(refined, w, h);
    out = {w, h, c: 3, data: new Float32Array(w * h * 3)};
    for (let i = 0; i < out.data.length; i++) out.data[i] = Math.min(255, Math.max(0, image.data[i] + change.data[i]));
  }
  if (gate) {
    for (let i = 0; i < out.data.length; i++) {
      const g = Math.min(1, Math.max(0, gate.data[(i / 3) | 0])); const v = image.data[i];
      out.data[i] = v + g * (out.data[i] - v);
    }
  }
  return out;
}
