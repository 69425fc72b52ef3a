// Occlusion: how much each pixel of a face crop shows that person's own face
// (stages/occlusion.py, mirrored constant for constant): the lower of the classical colour
// map and the learned map (our trust U-Net's LiteRT file, contract.trust). A fringe,
// glasses or a hand over the source stays out of the result; over the template it stays
// on top.
import {BackendError} from './errors.js';
import {centreOf, landmarkPoints} from './geometry.js';
import {compileModel, Tensor} from './litert.js';
import {convexHull, fillPolygon, gaussianBlur, makeImage, morph, resizeArea, resizeLinear, rgbToLab} from './raster.js';
import {faceMask, NO_REGION, skinMask} from './texture.js';

const WORK_FACTOR = 2;
const FLOOR_SPREAD = [4.0, 3.0, 3.0];
const LIT_PERCENTILE = 75.0;
const LIT_RANGE = 30.0;
const LOCAL_SIGMA = 1 / 12;
const DARKER_SLACK = 6.0;
const TRUSTED_BELOW = 2.5;
const DISTRUSTED_ABOVE = 4.5;
const SPECK = 3;
const GROW = 2;
const EYE_GROW = 0.1;
const INTERIOR_KEEP = 0.02;

const pyRound = (v) => Math.round(v); // the .5 ties (Python rounds them to even) do not occur in practice

/** cv2.dilate with an elliptic (2r+1) kernel, r = max(1, round(radius)). */
function grown(mask, radius) {
  const r = Math.max(1, pyRound(radius));
  return morph(mask, 2 * r + 1, true);
}


/** Eyes with lids and lashes, brows, lips and nostrils (uint8 0/255) at the working side:
 * not skin-coloured, but the face. */
function features(shape, side, scale, mesh) {
  const pts = shape.map(([x, y]) => [x * scale, y * scale]);
  const at = (idx) => idx.map((i) => pts[i]);
  const rounded = (p) => p.map(([x, y]) => [pyRound(x), pyRound(y)]);
  const [le, re] = [mesh.LEFT_EYE_LOOP, mesh.RIGHT_EYE_LOOP].map((loop) => centreOf(pts, loop));
  const iod = Math.hypot(le[0] - re[0], le[1] - re[1]);
  const eyes = makeImage(side, side, 1, Uint8Array);
  for (const loop of [mesh.LEFT_EYE_LOOP, mesh.RIGHT_EYE_LOOP]) fillPolygon(eyes, rounded(at(loop)), 255, false);
  const mask = grown(eyes, EYE_GROW * iod);
  for (const group of [mesh.LEFT_BROW_POINTS, mesh.RIGHT_BROW_POINTS]) fillPolygon(mask, convexHull(rounded(at(group))), 255, false);
  fillPolygon(mask, rounded(at(mesh.OUTER_LIPS_LOOP)), 255, false);
  const nose = at(mesh.NOSE_POINTS);
  const eyesY = centreOf(pts, mesh.LEFT_EYE_LOOP.concat(mesh.RIGHT_EYE_LOOP))[1];
  const lower = nose.filter((p) => p[1] > (eyesY + pts[4][1]) / 2);
  if (lower.length >= 3) fillPolygon(mask, convexHull(rounded(lower)), 255, false);
  return grown(mask, side / 128);
}

/** Median and percentile of a Float64Array (sorted in place: callers pass a fresh one). */
function median(values) {
  const s = values.sort();
  const n = s.length; const m = n >> 1;
  return n % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function percentile(values, q) {
  const s = values.sort();
  const pos = (q / 100) * (s.length - 1); const lo = Math.floor(pos); const hi = Math.min(lo + 1, s.length - 1);
  return s[lo] + (s[hi] - s[lo]) * (pos - lo);
}

/** Gaussian mean of `values` over the weighted pixels only, at a quarter of the side. */
function localMean(values, weight, sigma) {
  const {w, h} = values;
  const sw = Math.max(1, Math.floor(w / 4)); const sh = Math.max(1, Math.floor(h / 4));
  const vw = makeImage(w, h, 1);
  for (let i = 0; i < vw.data.length; i++) vw.data[i] = values.data[i] * weight.data[i];
  const num = gaussianBlur(resizeArea(vw, sw, sh), sigma / 4);
  const den = gaussianBlur(resizeArea(weight, sw, sh), sigma / 4);
  for (let i = 0; i < num.data.length; i++) num.data[i] /= Math.max(den.data[i], 1e-3);
  return resizeLinear(num, w, h);
}

/** 0..1 per pixel: how skin-like the colour is against the robust skin statistics (chroma
 * against the lit skin's median, lightness one-sided against the local lit skin). */
function colourTrust(lab, skin) {
  const n = lab.w * lab.h; const sk = skin.data; const L = lab.data;
  let count = 0;
  for (let i = 0; i < n; i++) if (sk[i] > 0.5) count++;
  const out = makeImage(lab.w, lab.h, 1);
  if (count < 50) { out.data.fill(1); return out; }
  const sel = new Int32Array(count);
  for (let i = 0, j = 0; i < n; i++) if (sk[i] > 0.5) sel[j++] = i;
  const channel = (idx, k) => { const v = new Float64Array(idx.length); for (let j = 0; j < idx.length; j++) v[j] = L[3 * idx[j] + k]; return v; };
  const selL = channel(sel, 0);
  const midL = median(selL.slice());
  const lit = sel.filter((i) => L[3 * i] >= midL);
  const med = [0, 1, 2].map((k) => median(channel(lit, k)));
  const spread = [0, 1, 2].map((k) => {
    const dev = channel(lit, k);
    for (let j = 0; j < dev.length; j++) dev[j] = Math.abs(dev[j] - med[k]);
    return Math.max(1.4826 * median(dev), FLOOR_SPREAD[k]);
  });
  spread[0] = FLOOR_SPREAD[0];
  const chroma = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const a = (L[3 * i + 1] - med[1]) / spread[1]; const b = (L[3 * i + 2] - med[2]) / spread[2];
    chroma[i] = Math.sqrt(a * a + b * b);
  }
  const litL = percentile(selL, LIT_PERCENTILE);
  const likely = makeImage(lab.w, lab.h, 1); let liked = 0;
  for (let i = 0; i < n; i++) {
    const v = sk[i] > 0.5 && chroma[i] < TRUSTED_BELOW && L[3 * i] > litL - LIT_RANGE ? 1 : 0;
    likely.data[i] = v; liked += v;
  }
  if (liked < 50) for (let i = 0; i < n; i++) likely.data[i] = sk[i] > 0.5 ? 1 : 0;
  const lightness = makeImage(lab.w, lab.h, 1);
  for (let i = 0; i < n; i++) lightness.data[i] = L[3 * i];
  const local = localMean(lightness, likely, LOCAL_SIGMA * lab.h);
  for (let i = 0; i < n; i++) {
    const darker = Math.max(Math.min(local.data[i], litL) - L[3 * i] - DARKER_SLACK, 0) / spread[0];
    const dist = Math.sqrt(darker * darker + chroma[i] * chroma[i]);
    out.data[i] = Math.min(1, Math.max(0, (DISTRUSTED_ABOVE - dist) / (DISTRUSTED_ABOVE - TRUSTED_BELOW)));
  }
  return out;
}

/** The crop at the working side in OpenCV's 8-bit LAB, brought back to L 0..100, a and b
 * signed (the Python side converts uint8 pixels through cv2's table). */
function workingLab(crop, side) {
  const bytes = makeImage(crop.w, crop.h, 3); const b = bytes.data; const c = crop.data;
  for (let i = 0; i < b.length; i++) { const v = c[i]; b[i] = v <= 0 ? 0 : v >= 255 ? 255 : Math.trunc(v); }
  const small = resizeArea(bytes, side, side);
  for (let i = 0; i < small.data.length; i++) small.data[i] = Math.round(small.data[i]);
  const lab = rgbToLab(small);
  for (let i = 0; i < side * side; i++) {
    lab.data[3 * i] = Math.round(Math.min(255, Math.max(0, lab.data[3 * i] * 2.55))) * (100 / 255);
    for (let k = 1; k < 3; k++) lab.data[3 * i + k] = Math.round(Math.min(255, Math.max(0, lab.data[3 * i + k] + 128))) - 128;
  }
  return lab;
}

/** The learned map's compiled LiteRT model (`url`: where the page serves the file). */
async function loadTrustModel(base, contract, url = new URL(contract.trust.url, base).href) {
  try {
    return await compileModel(base, url);
  } catch (err) {
    throw new BackendError(`could not load the trust model ${contract.trust.url}: ${err.message || err}`);
  }
}

/** An engine's `trustModel()`: the model compiled on first use (occlusion: true) and kept;
 * a failed load is tried again on the next call. */
export function lazyTrustModel(base, contract, url) {
  let model = null;
  return () => (model ??= loadTrustModel(base, contract, url).catch((err) => { model = null; throw err; }));
}

/** The learned map (float 0..1 at the crop's side): from the network's probability that a
 * pixel is something over the face, 1 below trusted_below, 0 above distrusted_above. */
async function learnedTrust(model, crop, skin, contract) {
  const {side, trusted_below: lo, distrusted_above: hi} = contract.trust;
  const clipped = makeImage(crop.w, crop.h, 3);
  for (let i = 0; i < clipped.data.length; i++) clipped.data[i] = Math.min(255, Math.max(0, crop.data[i]));
  const small = resizeArea(clipped, side, side); const skinSmall = resizeArea(skin, side, side);
  const plane = side * side; const image = new Float32Array(3 * plane);
  for (let i = 0; i < plane; i++) for (let k = 0; k < 3; k++) image[k * plane + i] = small.data[3 * i + k] / 255;
  const inputs = {image: new Tensor(image, [1, 3, side, side]), skin: new Tensor(Float32Array.from(skinSmall.data), [1, 1, side, side])};
  let outputs;
  try {
    outputs = await model.run(inputs);
  } finally {
    for (const t of Object.values(inputs)) t.delete();
  }
  const untrusted = (outputs.untrusted || Object.values(outputs)[0]).toTypedArray();
  for (const t of Object.values(outputs)) t.delete();
  const trust = makeImage(side, side, 1);
  for (let i = 0; i < plane; i++) trust.data[i] = Math.min(1, Math.max(0, (hi - untrusted[i]) / (hi - lo)));
  return resizeLinear(trust, crop.w, crop.h);
}

/** How much each pixel of `crop` (float RGB 0..255) shows its own face (float 0..1 at the
 * crop's side): the lower of the classical and, given `model`, the learned map. `outline`
 * (the face mask; for the template): only the colour map's patches that reach in from
 * beyond it count (occlusion.trust_map's `outline`). */
export async function trustMap(crop, shape, skin, contract, model = null, outline = null) {
  let classical = classicalTrust(crop, shape, skin, contract);
  if (outline) classical = reachingIn(classical, outline);
  if (!model) return classical;
  const learned = await learnedTrust(model, crop, skin, contract);
  for (let i = 0; i < classical.data.length; i++) classical.data[i] = Math.min(classical.data[i], learned.data[i]);
  return classical;
}

/** The source's map in its own aligned crop (float 0..1 at its side), made once per
 * prepared source and kept on it (PreparedSource.trust): every fusion of that source, the
 * album's or a live frame's, warps it by the source's field instead of mapping again. */
export async function sourceTrust(src, contract, model) {
  if (!src.trust) {
    const {crop, landmarks} = src.aligned;
    const own = landmarkPoints(landmarks);
    const ownFace = faceMask(own, crop.h, NO_REGION, contract);
    src.trust = await trustMap(crop, own, skinMask(own, crop.h, ownFace, contract), contract, model);
  }
  return src.trust;
}

/** The template's map on its crop warped to the fused shape (`shape`): its skin under the
 * face mask as the landmarks give it (`face`, when the caller has it already), and only
 * what reaches in from beyond that outline kept from the colour map. */
export async function templateTrust(crop, shape, contract, model, face = null) {
  const bare = face ?? faceMask(shape, crop.h, NO_REGION, contract);
  return trustMap(crop, shape, skinMask(shape, crop.h, bare, contract), contract, model, bare);
}

/** The colour map alone. `shape`: [x, y] landmarks in crop pixels; `skin`: the bare skin. */
function classicalTrust(crop, shape, skin, contract) {
  const size = crop.h; const side = Math.floor(size / WORK_FACTOR); const scale = side / size;
  const lab = workingLab(crop, side);
  const trust = colourTrust(lab, resizeArea(skin, side, side));
  let untrusted = makeImage(side, side, 1, Uint8Array);
  for (let i = 0; i < trust.data.length; i++) untrusted.data[i] = trust.data[i] < 0.5 ? 255 : 0;
  untrusted = morph(morph(untrusted, SPECK, false), SPECK, true);
  untrusted = morph(untrusted, 2 * GROW + 1, true);
  const feat = features(shape, side, scale, contract.mesh);
  const soft = makeImage(side, side, 1);
  for (let i = 0; i < soft.data.length; i++) soft.data[i] = feat.data[i] > 0 ? 0 : untrusted.data[i] / 255;
  const blurred = gaussianBlur(soft, 1.2);
  for (let i = 0; i < blurred.data.length; i++) blurred.data[i] = 1 - blurred.data[i];
  return resizeLinear(blurred, size, size);
}

/** 8-connected components of a 0/1 mask: {labels (0 = background), count, area}. */
function components(mask, w, h) {
  const labels = new Int32Array(w * h); const area = [0]; const stack = new Int32Array(w * h);
  let count = 1;
  for (let start = 0; start < w * h; start++) {
    if (!mask[start] || labels[start]) continue;
    let top = 0; stack[top++] = start; labels[start] = count; let n = 0;
    while (top) {
      const p = stack[--top]; n++;
      const x = p % w; const y = (p - x) / w;
      for (let dy = -1; dy <= 1; dy++) {
        const yy = y + dy;
        if (yy < 0 || yy >= h) continue;
        for (let dx = -1; dx <= 1; dx++) {
          const xx = x + dx;
          if (xx < 0 || xx >= w) continue;
          const q = yy * w + xx;
          if (mask[q] && !labels[q]) { labels[q] = count; stack[top++] = q; }
        }
      }
    }
    area.push(n); count++;
  }
  return {labels, count, area};
}

/** `trust` with only what reaches in from beyond the face left untrusted (the template's
 * occluders; its smile lines and lip shadows are its own face): occlusion.reaching_in. */
function reachingIn(trust, face) {
  const size = trust.h; const side = Math.floor(size / WORK_FACTOR);
  const small = resizeArea(trust, side, side); const inside = resizeArea(face, side, side);
  const untrusted = new Uint8Array(side * side);
  let insideCount = 0;
  for (let i = 0; i < untrusted.length; i++) { untrusted[i] = small.data[i] < 0.5 ? 1 : 0; if (inside.data[i] >= 0.5) insideCount++; }
  const {labels, count, area} = components(untrusted, side, side);
  if (count <= 1) return trust;
  const outside = new Uint8Array(count);
  for (let i = 0; i < labels.length; i++) if (inside.data[i] < 0.5) outside[labels[i]] = 1;
  const dropped = makeImage(side, side, 1, Uint8Array); let any = false;
  for (let i = 0; i < labels.length; i++) {
    const l = labels[i];
    if (l && !outside[l] && area[l] < INTERIOR_KEEP * Math.max(insideCount, 1)) { dropped.data[i] = 1; any = true; }
  }
  if (!any) return trust;
  const cleared = morph(dropped, 2 * GROW + 3, true);
  const soft = makeImage(side, side, 1);
  for (let i = 0; i < soft.data.length; i++) soft.data[i] = cleared.data[i];
  const big = resizeLinear(gaussianBlur(soft, 1.2), size, size);
  const out = makeImage(size, size, 1);
  for (let i = 0; i < out.data.length; i++) out.data[i] = Math.max(trust.data[i], Math.min(1, Math.max(0, big.data[i] * 1.5)));
  return out;
}
