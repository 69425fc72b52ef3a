// The live view's own fusion of one camera frame (issue #16): the album path's stages
// (fuseface.js) restructured for a stream. What depends only on the source is kept from
// startLive; the frame is sampled once, straight through the frame->crop similarity composed
// with the mesh field (no aligned crop, no rounding passes), and the paste (on the GPU:
// compositor.js) samples the frame again through the same composed field; the colour/light
// match runs at half the crop's side
// and its change is upsampled (it is smooth); the crop-sized buffers are reused frame to
// frame. The album path keeps its parity with Python; this one is measured against it
// (bench phone-app's fidelity figure, tests/test_phone_live.py).
import {invertAffine, keypoints, similarity} from './align.js';
import {BackendError} from './errors.js';
import {adjustTone, applyMode} from './finish.js';
import {anchorPoints, buildPlan, fuseShape, landmarkPoints} from './geometry.js';
import {mouthOpenRatio} from './landmarks.js';
import {sourceTrust, templateTrust} from './occlusion.js';
import {refine} from './refine.js';
import {faceMask, featureMask, isNoRegion, matchColour, mouthMask} from './texture.js';

/** Crop-space node positions of the plan's warp (planField's nodes, before the bilinear
 * fill): where each grid node of the crop samples `fromPts`' image. */
export function planNodes(plan, fromPts, anchors, out) {
  const src = fromPts.concat(anchors);
  const {n, step} = plan;
  for (let node = 0; node < n * n; node++) {
    const gx = (node % n) * step; const gy = Math.floor(node / n) * step;
    if (plan.outside[node]) { out.x[node] = gx; out.y[node] = gy; continue; }
    let x = 0; let y = 0;
    for (let k = 0; k < 3; k++) {
      const p = src[plan.vertices[node * 3 + k]]; const w = plan.weights[node * 3 + k];
      x += w * p[0]; y += w * p[1];
    }
    out.x[node] = x; out.y[node] = y;
  }
  return out;
}

/** Per crop column (or row): its node cell and the weight of the next node (planField's
 * bilinear fill, tabulated once per size). */
export function cellTable(size, n, step) {
  const cell = new Int32Array(size); const frac = new Float32Array(size);
  for (let x = 0; x < size; x++) {
    const f = Math.min(x / step, n - 1); const c0 = Math.min(Math.floor(f), n - 2);
    cell[x] = c0; frac[x] = f - c0;
  }
  return {cell, frac};
}

/** Sample `img` (`stride` bytes or floats a pixel, RGB first) at the node field, rows
 * y0..y1 and columns x0..x1 of the size x size crop, bilinear with the border replicated,
 * into `out` (Float32Array size*size*channels). The field's nodes are in `img`'s pixels.
 * `channels`: 3 (RGB) or 1 (the first value of each pixel: a map). */
export function warpNodes(img, nodes, table, n, size, box, out, channels = 3) {
  const {data, w, h, stride} = img; const {cell, frac} = table;
  const nx = nodes.x; const ny = nodes.y;
  const wm = w - 1; const hm = h - 1; const rowStride = w * stride;
  const rx = new Float64Array(n); const ry = new Float64Array(n); // this row's nodes, blended in y
  for (let y = box.y0; y < box.y1; y++) {
    const r0 = cell[y] * n; const ay = frac[y];
    for (let j = 0; j < n; j++) {
      rx[j] = nx[r0 + j] + ay * (nx[r0 + n + j] - nx[r0 + j]);
      ry[j] = ny[r0 + j] + ay * (ny[r0 + n + j] - ny[r0 + j]);
    }
    let o = (y * size + box.x0) * channels;
    for (let x = box.x0; x < box.x1; x++, o += channels) {
      const c = cell[x]; const ax = frac[x];
      const fx = rx[c] + ax * (rx[c + 1] - rx[c]); const fy = ry[c] + ax * (ry[c + 1] - ry[c]);
      const x0 = Math.floor(fx); const y0 = Math.floor(fy); const bx = fx - x0; const by = fy - y0;
      let p00; let p01; let p10; let p11;
      if (x0 >= 0 && y0 >= 0 && x0 < wm && y0 < hm) { // all four taps inside: most pixels
        p00 = y0 * rowStride + x0 * stride; p01 = p00 + stride; p10 = p00 + rowStride; p11 = p10 + stride;
      } else {
        const xa = x0 < 0 ? 0 : x0 > wm ? wm : x0; const xb = x0 + 1 < 0 ? 0 : x0 + 1 > wm ? wm : x0 + 1;
        const ya = y0 < 0 ? 0 : y0 > hm ? hm : y0; const yb = y0 + 1 < 0 ? 0 : y0 + 1 > hm ? hm : y0 + 1;
        p00 = ya * rowStride + xa * stride; p01 = ya * rowStride + xb * stride; p10 = yb * rowStride + xa * stride; p11 = yb * rowStride + xb * stride;
      }
      const v00 = (1 - bx) * (1 - by); const v01 = bx * (1 - by); const v10 = (1 - bx) * by; const v11 = bx * by;
      if (channels === 1) { out[o] = data[p00] * v00 + data[p01] * v01 + data[p10] * v10 + data[p11] * v11; continue; }
      out[o] = data[p00] * v00 + data[p01] * v01 + data[p10] * v10 + data[p11] * v11;
      out[o + 1] = data[p00 + 1] * v00 + data[p01 + 1] * v01 + data[p10 + 1] * v10 + data[p11 + 1] * v11;
      out[o + 2] = data[p00 + 2] * v00 + data[p01 + 2] * v01 + data[p10 + 2] * v10 + data[p11 + 2] * v11;
    }
  }
}

/** 2x2 averages of the box of a c-channel float image (an exact area resize by 2, as
 * cv2.INTER_AREA gives for a factor of 2), into out {w, h, c, data}; the box's sides even. */
export function halve(data, size, c, box, out) {
  const w = (box.x1 - box.x0) >> 1; const h = (box.y1 - box.y0) >> 1;
  out.w = w; out.h = h; out.c = c;
  const o = out.data;
  for (let y = 0; y < h; y++) {
    const r0 = ((box.y0 + 2 * y) * size + box.x0) * c; const r1 = r0 + size * c;
    for (let x = 0; x < w; x++) {
      for (let k = 0; k < c; k++) {
        const a = r0 + 2 * x * c + k;
        o[(y * w + x) * c + k] = 0.25 * (data[a] + data[a + c] + data[r1 - r0 + a] + data[r1 - r0 + a + c]);
      }
    }
  }
  return out;
}

/** cv2.resize's bilinear taps for doubling n samples: per output index its first source
 * index and the next one's weight (pixel centres aligned, the border clamped). */
function doubling(n) {
  const i0 = new Int32Array(2 * n); const a = new Float32Array(2 * n);
  for (let x = 0; x < 2 * n; x++) {
    let f = (x + 0.5) / 2 - 0.5; f = f < 0 ? 0 : f > n - 1 ? n - 1 : f;
    const k = Math.min(Math.floor(f), Math.max(0, n - 2));
    i0[x] = k; a[x] = n > 1 ? f - k : 0;
  }
  return {i0, a};
}

/** Adds the half-side RGB image `half` (doubled, bilinear; it covers the crop from
 * `origin` {x0, y0} on) to the box `box` of `out` (a size x size RGB crop) where `where`
 * (a crop mask, or null: everywhere) is above zero, each value clamped to 0..255; `into`
 * (or null): the sum is then mixed into `into` by that weight
 * (into += where * (sum - into)). */
function addDoubled(half, origin, out, size, box, where, into) {
  const cols = doubling(half.w); const rows = doubling(half.h); const d = half.data; const hw = half.w;
  for (let y = box.y0; y < box.y1; y++) {
    const ry = y - origin.y0; const r0 = rows.i0[ry] * hw; const r1 = (rows.i0[ry] + (half.h > 1 ? 1 : 0)) * hw; const ay = rows.a[ry];
    for (let x = box.x0; x < box.x1; x++) {
      const i = y * size + x;
      const m = where ? where[i] : 1;
      if (m <= 0) continue;
      const rx = x - origin.x0; const c0 = cols.i0[rx]; const c1 = c0 + (hw > 1 ? 1 : 0); const ax = cols.a[rx];
      const w00 = (1 - ax) * (1 - ay); const w01 = ax * (1 - ay); const w10 = (1 - ax) * ay; const w11 = ax * ay;
      const p00 = 3 * (r0 + c0); const p01 = 3 * (r0 + c1); const p10 = 3 * (r1 + c0); const p11 = 3 * (r1 + c1);
      for (let k = 0; k < 3; k++) {
        let v = out[3 * i + k] + d[p00 + k] * w00 + d[p01 + k] * w01 + d[p10 + k] * w10 + d[p11 + k] * w11;
        v = v < 0 ? 0 : v > 255 ? 255 : v;
        if (into) into[3 * i + k] += m * (v - into[3 * i + k]); else out[3 * i + k] = v;
      }
    }
  }
}

/** The box of a mask where it exceeds `eps`, grown by `pad`, with even corners (so it
 * halves exactly); null when empty. */
function evenBox(mask, size, eps, pad) {
  let x0 = size; let y0 = size; let x1 = -1; let y1 = -1;
  for (let y = 0; y < size; y++) {
    const row = y * size;
    for (let x = 0; x < size; x++) {
      if (mask[row + x] > eps) { if (x < x0) x0 = x; if (x > x1) x1 = x; if (y < y0) y0 = y; if (y > y1) y1 = y; }
    }
  }
  if (x1 < 0) return null;
  const even = (v) => v & ~1;
  return {x0: Math.max(0, even(x0 - pad)), y0: Math.max(0, even(y0 - pad)),
    x1: Math.min(size, even(x1 + pad + 2)), y1: Math.min(size, even(y1 + pad + 2))};
}

/** One source fused into camera frames, frame after frame; buffers kept between frames. */
export class LiveFusion {
  /** `source`: the prepared source {aligned} (its crop at `size`). */
  constructor(contract, source, size) {
    this.contract = contract; this.size = size; this.source = source;
    this.srcLm = source.aligned.landmarks; this.srcPts = landmarkPoints(source.aligned.landmarks);
    // The crop's values are whole numbers 0..255 (rounded as the album path's): as bytes,
    // the same values, and warpNodes reads one kind of array for the frame and the source.
    const crop = source.aligned.crop;
    this.srcImg = {data: Uint8ClampedArray.from(crop.data), w: crop.w, h: crop.h, stride: 3};
    const step = contract.constants.grid_step; const n = Math.floor(size / step) + 1;
    this.n = n; this.table = cellTable(size, n, step);
    const px = size * size;
    this.tplNodes = {x: new Float64Array(n * n), y: new Float64Array(n * n)};
    this.srcNodes = {x: new Float64Array(n * n), y: new Float64Array(n * n)};
    this.levelNodes = {x: new Float64Array(n * n), y: new Float64Array(n * n)}; // tplNodes in the level's pixels
    this.tpl = new Float32Array(px * 3); this.src = new Float32Array(px * 3);
    this.fused = new Float32Array(px * 3); this.delta = new Float32Array(px * 3);
    this.weight = new Float32Array(px); this.landmarks = null;
    const half = (c) => ({w: 0, h: 0, c, data: new Float32Array((px / 4) * c)});
    this.half = {src: half(3), tpl: half(3), fused: half(3), mask: half(1), skin: half(1)};
    this.level = null; // the frame at half resolution, when the crop shrinks it that much
    this.srcTrust = null; // with occlusion: the source's map as bytes, and warped (0..255)
    this.srcTrustWarped = new Float32Array(px);
  }

  /** The frame as the warp samples it: the RGBA pixels, or their 2x2 averages over the
   * part the crop covers when the crop shrinks the frame by more than 1.5 (no aliasing, as
   * the album path's area resize before its warp). Returns {img, toLevel} (frame -> level). */
  frameLevel(rgba, w, h, toImage, scale) {
    const full = {data: rgba, w, h, stride: 4};
    if (scale >= 1 / 1.5) return {img: full, toLevel: [[1, 0, 0], [0, 1, 0]]};
    const s = this.size; const T = toImage;
    const xs = [0, s, 0, s].map((x, i) => T[0][0] * x + T[0][1] * (i < 2 ? 0 : s) + T[0][2]);
    const ys = [0, s, 0, s].map((x, i) => T[1][0] * x + T[1][1] * (i < 2 ? 0 : s) + T[1][2]);
    const x0 = Math.max(0, (Math.floor(Math.min(...xs)) - 4) & ~1); const y0 = Math.max(0, (Math.floor(Math.min(...ys)) - 4) & ~1);
    const x1 = Math.min(w & ~1, Math.ceil(Math.max(...xs)) + 4); const y1 = Math.min(h & ~1, Math.ceil(Math.max(...ys)) + 4);
    const lw = Math.max(1, (x1 - x0) >> 1); const lh = Math.max(1, (y1 - y0) >> 1);
    if (!this.level || this.level.data.length < lw * lh * 3) this.level = {data: new Float32Array(lw * lh * 3)};
    const d = this.level.data;
    for (let y = 0; y < lh; y++) {
      const r0 = ((y0 + 2 * y) * w + x0) * 4; const r1 = r0 + w * 4;
      for (let x = 0, o = y * lw * 3; x < lw; x++, o += 3) {
        const a = r0 + 8 * x; const b = r1 + 8 * x;
        d[o] = 0.25 * (rgba[a] + rgba[a + 4] + rgba[b] + rgba[b + 4]);
        d[o + 1] = 0.25 * (rgba[a + 1] + rgba[a + 5] + rgba[b + 1] + rgba[b + 5]);
        d[o + 2] = 0.25 * (rgba[a + 2] + rgba[a + 6] + rgba[b + 2] + rgba[b + 6]);
      }
    }
    // level pixel centre i <-> frame x0 + 2i + 0.5
    return {img: {data: d, w: lw, h: lh, stride: 3}, toLevel: [[0.5, 0, -(x0 + 0.5) / 2], [0, 0.5, -(y0 + 0.5) / 2]]};
  }

  /** Fuse into the frame `rgba` (w x h, RGBA) the face `face` ({landmarks} in its pixels):
   * what the compositor draws over the frame (fieldAndChange), or null where nothing
   * changes. */
  async fuse(engine, rgba, w, h, face, p, timings) {
    const {contract, size: S, n} = this;
    const box = {x0: 0, y0: 0, x1: S, y1: S};
    const a = await timings.stage('align', () => {
      const canon = contract.canonical_keypoints.map(([x, y]) => [x * S, y * S]);
      const toCrop = similarity(keypoints(face.landmarks, contract.landmarks), canon);
      const scale = Math.hypot(toCrop[0][0], toCrop[1][0]);
      const count = face.landmarks.length / 3;
      if (!this.landmarks || this.landmarks.length !== count * 3) this.landmarks = new Float64Array(count * 3);
      const lm = this.landmarks; const L = face.landmarks;
      for (let i = 0; i < count; i++) {
        const x = L[3 * i]; const y = L[3 * i + 1];
        lm[3 * i] = toCrop[0][0] * x + toCrop[0][1] * y + toCrop[0][2];
        lm[3 * i + 1] = toCrop[1][0] * x + toCrop[1][1] * y + toCrop[1][2];
        lm[3 * i + 2] = L[3 * i + 2] * scale;
      }
      const toImage = invertAffine(toCrop);
      return {toCrop, toImage, scale, level: this.frameLevel(rgba, w, h, toImage, scale)};
    });
    const geo = await timings.stage('geometry', () => {
      const tplPts = landmarkPoints(this.landmarks);
      const shape = p.ratio === 0 ? tplPts : fuseShape(this.srcLm, this.landmarks, p.shape_ratio, contract);
      const anchors = anchorPoints(shape, S, contract);
      const plan = buildPlan(shape, anchors, S, contract);
      // The template's nodes in crop pixels (the paste's changed box), then in the frame's
      // pixels and the sampled level's: one warp from the camera frame to the fused shape.
      const nodes = planNodes(plan, tplPts, anchors, this.tplNodes);
      const moved = movedBox(nodes, plan, contract.constants.change_eps);
      const T = a.toImage; const V = a.level.toLevel;
      const M = [[V[0][0] * T[0][0], V[0][0] * T[0][1], V[0][0] * T[0][2] + V[0][2]],
        [V[1][1] * T[1][0], V[1][1] * T[1][1], V[1][1] * T[1][2] + V[1][2]]];
      const lv = this.levelNodes;
      for (let i = 0; i < n * n; i++) {
        lv.x[i] = M[0][0] * nodes.x[i] + M[0][1] * nodes.y[i] + M[0][2];
        lv.y[i] = M[1][0] * nodes.x[i] + M[1][1] * nodes.y[i] + M[1][2];
      }
      warpNodes(a.level.img, lv, this.table, n, S, box, this.tpl);
      return {shape, plan, anchors, moved};
    });
    const region = {scale: p.region_scale, rotation: p.region_rotation, offset_x: p.region_offset_x, offset_y: p.region_offset_y};
    let tex = await timings.stage('texture', () => this.masks(geo, face, p, region));
    // With occlusion, the trust maps (their own stage: they cost as much as the rest of
    // the texture stage together), then the mix.
    const trust = p.occlusion && tex.box ? await timings.stage('occlusion', () => this.trusts(engine, geo, tex)) : null;
    if (tex.box) tex = await timings.stage('texture', () => this.mix(geo, p, tex, trust));
    let fused = this.fused;
    if (p.refine && p.ratio > 0 && tex.box) {
      if (!engine.refiner) throw new BackendError('the U-Net refiner is not loaded: call loadEngine() without {refiner: false}, or set refine: false');
      await timings.stage('refine', () => this.refine(engine.refiner, tex.touch, tex.gate));
    }
    const finished = await timings.stage('finish', () => {
      const img = (data) => ({w: S, h: S, c: 3, data});
      let f = img(p.ratio === 0 ? this.tpl : fused);
      f = applyMode(f, img(this.tpl), {w: S, h: S, c: 1, data: this.weight}, tex.touch, p.mode);
      return adjustTone(f, tex.touch, p.brightness, p.contrast, p.saturation);
    });
    fused = finished.data;
    return timings.stage('paste', () => {
      const change = this.change(tex.face.data, fused);
      const box = union(geo.moved, change.box);
      return box ? fieldAndChange(a, this.tplNodes, n, S, box, this.delta) : null;
    });
  }

  /** The fused crop's change over the template inside the face, into this.delta (zero
   * elsewhere); {box}: where there is any (inclusive ends), or null. */
  change(face, fused) {
    const {contract, size: S} = this;
    const eps = contract.constants.region_eps; const D = this.delta; const T = this.tpl;
    let box = null;
    for (let y = 0; y < S; y++) {
      let first = -1; let last = -1;
      for (let x = 0, i = y * S; x < S; x++, i++) {
        if (face[i] > eps) {
          D[3 * i] = fused[3 * i] - T[3 * i]; D[3 * i + 1] = fused[3 * i + 1] - T[3 * i + 1]; D[3 * i + 2] = fused[3 * i + 2] - T[3 * i + 2];
          if (first < 0) first = x;
          last = x;
        } else {
          D[3 * i] = 0; D[3 * i + 1] = 0; D[3 * i + 2] = 0;
        }
      }
      if (first < 0) continue;
      if (!box) box = {x0: first, y0: y, x1: last, y1: y};
      box.x0 = Math.min(box.x0, first); box.x1 = Math.max(box.x1, last); box.y1 = y;
    }
    return {box};
  }

  /** The face mask, the mix weight and the box where it is above zero (null: nothing to
   * mix), the source warped over that box: {face (the soft face mask image), touch (what
   * later stages may change), gate (null), box, region, mouth, srcNodes}. */
  masks(geo, face, p, region) {
    const {contract, size: S} = this;
    const faceImg = faceMask(geo.shape, S, region, contract);
    const fm = faceImg.data; const wt = this.weight;
    const none = {face: faceImg, touch: faceImg, gate: null, box: null};
    this.fused.set(this.tpl);
    if (p.ratio === 0) { wt.fill(1); return none; }
    // Where the paste reads the fused crop (the face mask above region_eps): the U-Net's
    // change is added only there.
    this.region = evenBox(fm, S, contract.constants.region_eps, 0);
    const open = mouthOpenRatio(face.landmarks, contract.landmarks) > contract.constants.mouth_open_threshold;
    const mouth = open ? mouthMask(geo.shape, S, contract).data : null;
    for (let i = 0; i < S * S; i++) wt[i] = Math.fround(p.ratio * fm[i]) * (mouth ? 1 - mouth[i] : 1);
    const box = evenBox(wt, S, 0, 2); // the trust maps only lower the weight: it holds for them too
    if (!box) return none;
    // The source through its own field, inside the box only.
    const srcNodes = planNodes(geo.plan, this.srcPts, geo.anchors, this.srcNodes);
    warpNodes(this.srcImg, srcNodes, this.table, this.n, S, box, this.src);
    return {face: faceImg, touch: faceImg, gate: null, box, region, mouth, srcNodes};
  }

  /** The colour/light match (at half side) and the ratio mix into this.fused, with `trust`
   * (trusts(), or null) in the weight and the colour statistics; the template's map then
   * bounds what later stages change (`touch`, `gate`). */
  mix(geo, p, tex, trust) {
    const {contract, size: S} = this;
    const {box, mouth} = tex; const fm = tex.face.data; const wt = this.weight;
    if (trust) { // the weight as texture.mix makes it: ratio x face x each map, then the mouth
      const ts = trust.src; const tt = trust.tpl;
      for (let y = box.y0; y < box.y1; y++) {
        for (let x = box.x0, i = y * S + box.x0; x < box.x1; x++, i++) {
          const v = Math.fround(Math.fround(Math.fround(p.ratio * fm[i]) * ts[i]) * tt[i]);
          wt[i] = v * (mouth ? 1 - mouth[i] : 1);
        }
      }
    }
    // The colour/light match at half side: the recoloured source's change, upsampled. Its
    // statistics are taken over trusted skin only.
    const H = this.half;
    halve(this.src, S, 3, box, H.src); halve(this.tpl, S, 3, box, H.tpl);
    const hs = S / 2;
    const halfShape = geo.shape.map(([x, y]) => [(x - 0.5) / 2, (y - 0.5) / 2]);
    const features = featureMask(halfShape, hs, contract).data;
    const bx = box.x0 >> 1; const by = box.y0 >> 1; const sk = H.skin; sk.w = H.src.w; sk.h = H.src.h;
    const trusted = (i) => 0.25 * (trust.src[i] * trust.tpl[i] + trust.src[i + 1] * trust.tpl[i + 1]
      + trust.src[i + S] * trust.tpl[i + S] + trust.src[i + S + 1] * trust.tpl[i + S + 1]);
    for (let y = 0; y < sk.h; y++) {
      for (let x = 0; x < sk.w; x++) {
        const i = (box.y0 + 2 * y) * S + box.x0 + 2 * x;
        const f = 0.25 * (fm[i] + fm[i + 1] + fm[i + S] + fm[i + S + 1]);
        sk.data[y * sk.w + x] = f * (1 - features[(by + y) * hs + bx + x] / 255) * (trust ? trusted(i) : 1);
      }
    }
    const srcHalf = {w: H.src.w, h: H.src.h, c: 3, data: H.src.data.subarray(0, H.src.w * H.src.h * 3)};
    const tplHalf = {w: H.tpl.w, h: H.tpl.h, c: 3, data: H.tpl.data.subarray(0, H.tpl.w * H.tpl.h * 3)};
    const skinHalf = {w: sk.w, h: sk.h, c: 1, data: sk.data.subarray(0, sk.w * sk.h)};
    const matched = matchColour(srcHalf, tplHalf, skinHalf, hs / 24);
    const change = H.fused; change.w = srcHalf.w; change.h = srcHalf.h; change.c = 3;
    for (let i = 0; i < srcHalf.data.length; i++) change.data[i] = matched.data[i] - srcHalf.data[i];
    // fused += weight * (clip(source + change) - fused); the source's buffer is free after.
    addDoubled(change, box, this.src, S, box, wt, this.fused);
    if (!trust) return tex;
    // Later stages change only what is the template's face: its occluders stay on top.
    this.touch ??= {w: S, h: S, c: 1, data: new Float32Array(S * S)};
    for (let i = 0; i < S * S; i++) this.touch.data[i] = Math.fround(fm[i] * trust.tpl[i]);
    return {...tex, touch: this.touch, gate: trust.tpl};
  }

  /** The trust maps of this frame (occlusion, as fuseface.js): {src (the source's map,
   * made once in its own crop and warped by its field over `box`), tpl (the template's,
   * in the crop)}, float 0..1 a crop pixel. */
  async trusts(engine, geo, {face: faceImg, region, srcNodes, box}) {
    const {contract, size: S} = this;
    if (!engine.trustModel) throw new BackendError('the occlusion trust model is not loaded: this engine was made without it, or set occlusion: false');
    const model = await engine.trustModel();
    if (!this.srcTrust) { // as bytes, as the source crop: warpNodes reads one kind of array
      const own = await sourceTrust(this.source, contract, model);
      this.srcTrust = {data: Uint8ClampedArray.from(own.data, (v) => v * 255), w: own.w, h: own.h, stride: 1};
    }
    const ts = this.srcTrustWarped;
    warpNodes(this.srcTrust, srcNodes, this.table, this.n, S, box, ts, 1);
    for (let y = box.y0; y < box.y1; y++) for (let i = y * S + box.x0; i < y * S + box.x1; i++) ts[i] /= 255;
    const tpl = await templateTrust({w: S, h: S, c: 3, data: this.tpl}, geo.shape, contract, model,
        isNoRegion(region) ? faceImg : null);
    return {src: ts, tpl: tpl.data};
  }

  /** The U-Net at half side (the refine stage's work side) on the mix, the face mask (`touch`)
   * and the template; its change upsampled into this.fused, inside the face (this.region,
   * from masks()), weighted by `gate` (the template's trust map, or null) as
   * stages/refine.py weights it. */
  async refine(refiner, touch, gate) {
    const S = this.size; const H = this.half; const all = {x0: 0, y0: 0, x1: S, y1: S};
    this.small ??= {w: 0, h: 0, c: 3, data: new Float32Array((S * S * 3) / 4)};
    const small = halve(this.fused, S, 3, all, this.small);
    const tpl = halve(this.tpl, S, 3, all, H.tpl);
    const mask = halve(touch.data, S, 1, all, H.mask);
    const refined = await refine(refiner, small, mask, tpl, S / 2);
    const change = H.fused; change.w = small.w; change.h = small.h;
    for (let i = 0; i < refined.data.length; i++) change.data[i] = refined.data[i] - small.data[i];
    if (this.region) addDoubled(change, all, this.fused, S, this.region, gate, gate ? this.fused : null);
  }
}

/** The crop box where the template's field moves a node by more than `eps` (grown by a
 * cell: the field is bilinear between nodes); null when it moves nothing. */
function movedBox(nodes, plan, eps) {
  const {n, step} = plan; let b = null;
  for (let node = 0; node < n * n; node++) {
    const gx = (node % n) * step; const gy = Math.floor(node / n) * step;
    const dx = nodes.x[node] - gx; const dy = nodes.y[node] - gy;
    if (dx * dx + dy * dy > eps * eps) {
      if (!b) b = {x0: gx, y0: gy, x1: gx, y1: gy};
      b.x0 = Math.min(b.x0, gx); b.y0 = Math.min(b.y0, gy); b.x1 = Math.max(b.x1, gx); b.y1 = Math.max(b.y1, gy);
    }
  }
  if (!b) return null;
  const s = plan.size - 1;
  return {x0: Math.max(0, b.x0 - step), y0: Math.max(0, b.y0 - step), x1: Math.min(s, b.x1 + step), y1: Math.min(s, b.y1 + step)};
}

function union(a, b) {
  if (!a) return b; if (!b) return a;
  return {x0: Math.min(a.x0, b.x0), y0: Math.min(a.y0, b.y0), x1: Math.max(a.x1, b.x1), y1: Math.max(a.y1, b.y1)};
}

/** What the compositor (compositor.js) needs to paste the fusion into the frame: how far
 * the template's field moves each node, taken to frame pixels (Float32Array, x y per node:
 * the field at a frame pixel is that pixel plus these shifts, bilinear between nodes, since
 * the crop -> frame map is affine), the frame -> crop similarity, the crop box `box` where
 * anything changes (inclusive ends), and the change `D` over that box grown by a pixel
 * (zeros there: its bilinear samples at the box's edge read them), as its own RGB array. */
function fieldAndChange(a, nodes, n, S, box, D) {
  const T = a.toImage; const step = S / (n - 1);
  const shifts = new Float32Array(2 * n * n);
  for (let i = 0; i < n * n; i++) {
    const dx = nodes.x[i] - (i % n) * step; const dy = nodes.y[i] - Math.floor(i / n) * step;
    shifts[2 * i] = T[0][0] * dx + T[0][1] * dy;
    shifts[2 * i + 1] = T[1][0] * dx + T[1][1] * dy;
  }
  const x0 = Math.max(0, box.x0 - 1); const y0 = Math.max(0, box.y0 - 1);
  const x1 = Math.min(S - 1, box.x1 + 1); const y1 = Math.min(S - 1, box.y1 + 1);
  const w = x1 - x0 + 1; const h = y1 - y0 + 1;
  const data = new Float32Array(w * h * 3);
  for (let y = 0; y < h; y++) data.set(D.subarray(3 * ((y0 + y) * S + x0), 3 * ((y0 + y) * S + x1 + 1)), 3 * y * w);
  return {n, crop: S, shifts, toCrop: a.toCrop, box, change: {x0, y0, w, h, data}};
}
