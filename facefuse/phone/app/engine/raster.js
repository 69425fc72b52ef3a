// Image operations over plain typed arrays, with OpenCV's semantics (pixel centres,
// BORDER_REFLECT_101 for filters, bilinear taps) so the stages match the Python pipeline.
// An image is {w, h, c, data}: data interleaved, Float32Array unless said otherwise.

export function makeImage(w, h, c, Type = Float32Array) {
  return {w, h, c, data: new Type(w * h * c)};
}

export function toFloat(img) {
  return {w: img.w, h: img.h, c: img.c, data: new Float32Array(img.data)};
}

const reflect101 = (i, n) => {
  if (n === 1) return 0;
  while (i < 0 || i >= n) i = i < 0 ? -i : 2 * n - 2 - i;
  return i;
};
const clampIndex = (i, n) => (i < 0 ? 0 : i >= n ? n - 1 : i);

/** Area-averaging resize (cv2.INTER_AREA) for shrinking; bilinear when enlarging. Each
 * output value is summed tap by tap in float32, in the order of the spans (locals rather
 * than the output array: the same roundings, several times faster). */
export function resizeArea(img, nw, nh) {
  if (nw >= img.w && nh >= img.h) return resizeLinear(img, nw, nh);
  const {w, h, c, data} = img;
  const xs = spans(w, nw, w / nw); const ys = spans(h, nh, h / nh);
  const xStart = xs.start; const xIndex = xs.index; const xWeight = xs.weight;
  const tmp = new Float32Array(nw * h * c); // horizontal pass, then vertical
  const f = Math.fround;
  for (let y = 0; y < h; y++) {
    const row = y * w * c; let o = y * nw * c;
    for (let x = 0; x < nw; x++, o += c) {
      const t0 = xStart[x]; const t1 = xStart[x + 1];
      if (c === 1) {
        let a = 0;
        for (let t = t0; t < t1; t++) a = f(a + data[row + xIndex[t]] * xWeight[t]);
        tmp[o] = a;
      } else if (c === 3) {
        let a = 0; let b = 0; let d = 0;
        for (let t = t0; t < t1; t++) {
          const src = row + xIndex[t] * 3; const wt = xWeight[t];
          a = f(a + data[src] * wt); b = f(b + data[src + 1] * wt); d = f(d + data[src + 2] * wt);
        }
        tmp[o] = a; tmp[o + 1] = b; tmp[o + 2] = d;
      } else {
        for (let t = t0; t < t1; t++) {
          const src = row + xIndex[t] * c; const wt = xWeight[t];
          for (let k = 0; k < c; k++) tmp[o + k] += data[src + k] * wt;
        }
      }
    }
  }
  const out = makeImage(nw, nh, c); const od = out.data; const rowLen = nw * c;
  const yStart = ys.start; const yIndex = ys.index; const yWeight = ys.weight;
  for (let y = 0; y < nh; y++) {
    const orow = y * rowLen; const t0 = yStart[y]; const t1 = yStart[y + 1];
    for (let t = t0; t < t1; t++) {
      const src = yIndex[t] * rowLen; const wt = yWeight[t];
      for (let i = 0; i < rowLen; i++) od[orow + i] += tmp[src + i] * wt;
    }
  }
  return out;
}

/** Source pixels and weights of each output pixel of an area resize (flat arrays). */
function spans(n, nn, scale) {
  const start = new Int32Array(nn + 1); const index = []; const weight = [];
  for (let i = 0; i < nn; i++) {
    start[i] = index.length;
    const f0 = i * scale; const f1 = Math.min(n, f0 + scale);
    for (let j = Math.floor(f0); j < Math.ceil(f1 - 1e-9); j++) {
      const cover = Math.min(f1, j + 1) - Math.max(f0, j);
      if (cover > 1e-9) { index.push(Math.min(j, n - 1)); weight.push(cover / (f1 - f0)); }
    }
  }
  start[nn] = index.length;
  return {start, index: Int32Array.from(index), weight: Float64Array.from(weight)};
}

/** Bilinear resize with pixel-centre alignment (cv2.INTER_LINEAR). The columns' taps are
 * worked out once, not per row (the same arithmetic, so the same values). `within` (input
 * pixels {x0, y0, x1, y1}, ends out), when given: the input is zero outside it, so only
 * the output pixels with a tap inside are computed (the rest are zero all the same). */
export function resizeLinear(img, nw, nh, within = null) {
  const {w, h, c, data} = img;
  const out = makeImage(nw, nh, c); const o = out.data;
  const sx = w / nw; const sy = h / nh;
  const cx0 = new Int32Array(nw); const cx1 = new Int32Array(nw); const cax = new Float64Array(nw);
  for (let x = 0; x < nw; x++) {
    const fx = (x + 0.5) * sx - 0.5; let x0 = Math.floor(fx); let ax = fx - x0;
    if (x0 < 0) { x0 = 0; ax = 0; }
    if (x0 >= w - 1) { x0 = w - 1; ax = 0; }
    cx0[x] = x0 * c; cx1[x] = Math.min(x0 + 1, w - 1) * c; cax[x] = ax;
  }
  let ox0 = 0; let ox1 = nw; // the output columns with a tap inside `within`
  if (within) {
    while (ox0 < nw && cx1[ox0] < within.x0 * c) ox0++;
    while (ox1 > ox0 && cx0[ox1 - 1] >= within.x1 * c) ox1--;
  }
  for (let y = 0; y < nh; y++) {
    const fy = (y + 0.5) * sy - 0.5; let y0 = Math.floor(fy); let ay = fy - y0;
    if (y0 < 0) { y0 = 0; ay = 0; }
    if (y0 >= h - 1) { y0 = h - 1; ay = 0; }
    if (within && (Math.min(y0 + 1, h - 1) < within.y0 || y0 >= within.y1)) continue;
    const r0 = y0 * w * c; const r1 = Math.min(y0 + 1, h - 1) * w * c; const oy = y * nw * c;
    for (let x = ox0; x < ox1; x++) {
      const ax = cax[x]; const p0 = cx0[x]; const p1 = cx1[x]; const ox = oy + x * c;
      for (let k = 0; k < c; k++) {
        const a = data[r0 + p0 + k]; const b = data[r0 + p1 + k];
        const d = data[r1 + p0 + k]; const e = data[r1 + p1 + k];
        o[ox + k] = (a * (1 - ax) + b * ax) * (1 - ay) + (d * (1 - ax) + e * ax) * ay;
      }
    }
  }
  return out;
}

/** Sample `img` at (sx, sy) per output pixel, bilinear. `border`: 'replicate' or a number
 * (constant; NaN marks pixels whose taps leave the image). Writes into out at index i. */
function sampleInto(img, fx, fy, out, i, border) {
  const {w, h, c, data} = img;
  const x0 = Math.floor(fx); const y0 = Math.floor(fy);
  const ax = fx - x0; const ay = fy - y0;
  const w00 = (1 - ax) * (1 - ay); const w01 = ax * (1 - ay); const w10 = (1 - ax) * ay; const w11 = ax * ay;
  if (x0 >= 0 && y0 >= 0 && x0 + 1 < w && y0 + 1 < h) { // every tap inside: the common case
    const p = (y0 * w + x0) * c; const q = p + w * c;
    for (let k = 0; k < c; k++) {
      out[i * c + k] = data[p + k] * w00 + data[p + c + k] * w01 + data[q + k] * w10 + data[q + c + k] * w11;
    }
    return;
  }
  const replicate = border === 'replicate';
  const taps = [[x0, y0, w00], [x0 + 1, y0, w01], [x0, y0 + 1, w10], [x0 + 1, y0 + 1, w11]];
  for (let k = 0; k < c; k++) {
    let v = 0;
    for (const [xx, yy, wt] of taps) {
      let p;
      if (xx < 0 || yy < 0 || xx >= w || yy >= h) {
        p = replicate ? data[(clampIndex(yy, h) * w + clampIndex(xx, w)) * c + k] : border;
      } else {
        p = data[(yy * w + xx) * c + k];
      }
      v += p * wt; // NaN borders spread, as OpenCV's do
    }
    out[i * c + k] = v;
  }
}

/** cv2.warpAffine with WARP_INVERSE_MAP: `m` (2x3, rows) takes output pixels to input. */
export function warpAffineInverse(img, m, w, h, border = 'replicate') {
  const out = makeImage(w, h, img.c);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const fx = m[0][0] * x + m[0][1] * y + m[0][2];
      const fy = m[1][0] * x + m[1][1] * y + m[1][2];
      if (!sampleInside(img, fx, fy, out.data, y * w + x)) sampleInto(img, fx, fy, out.data, y * w + x, border);
    }
  }
  return out;
}

/** sampleInto's common case, kept small enough to inline in the warp loops: every tap
 * inside the image and 3 channels; false (nothing written) otherwise. */
function sampleInside(img, fx, fy, out, i) {
  const {w, h, c, data} = img;
  const x0 = Math.floor(fx); const y0 = Math.floor(fy);
  if (c !== 3 || x0 < 0 || y0 < 0 || x0 + 1 >= w || y0 + 1 >= h) return false;
  const ax = fx - x0; const ay = fy - y0;
  const w00 = (1 - ax) * (1 - ay); const w01 = ax * (1 - ay); const w10 = (1 - ax) * ay; const w11 = ax * ay;
  const p = (y0 * w + x0) * 3; const q = p + w * 3; const o = i * 3;
  out[o] = data[p] * w00 + data[p + 3] * w01 + data[q] * w10 + data[q + 3] * w11;
  out[o + 1] = data[p + 1] * w00 + data[p + 4] * w01 + data[q + 1] * w10 + data[q + 4] * w11;
  out[o + 2] = data[p + 2] * w00 + data[p + 5] * w01 + data[q + 2] * w10 + data[q + 5] * w11;
  return true;
}

/** cv2.remap, bilinear: output (x, y) samples img at (mapX, mapY). */
export function remap(img, mapX, mapY, w, h, border = 'replicate') {
  const out = makeImage(w, h, img.c);
  for (let i = 0; i < w * h; i++) {
    if (!sampleInside(img, mapX[i], mapY[i], out.data, i)) sampleInto(img, mapX[i], mapY[i], out.data, i, border);
  }
  return out;
}

/** Gaussian kernel as cv2.getGaussianKernel picks it for GaussianBlur((0, 0), sigma). */
function gaussianKernel(sigma, eightBit) {
  let n = Math.round(sigma * (eightBit ? 3 : 4) * 2 + 1) | 1;
  n = Math.max(n, 1);
  const k = new Float64Array(n); let s = 0;
  for (let i = 0; i < n; i++) {
    const x = i - (n - 1) / 2; k[i] = Math.exp(-(x * x) / (2 * sigma * sigma)); s += k[i];
  }
  for (let i = 0; i < n; i++) k[i] /= s;
  return k;
}

/** cv2.GaussianBlur(img, (0, 0), sigma), BORDER_REFLECT_101. `eightBit`: the image is
 * uint8 (OpenCV's kernel is then 3 sigma wide and the result is rounded). */
export function gaussianBlur(img, sigma, eightBit = false) {
  const {w, h, c} = img;
  const k = gaussianKernel(sigma, eightBit); const r = (k.length - 1) / 2; const n = k.length;
  const xi = new Int32Array((w + 2 * r)); const yi = new Int32Array((h + 2 * r));
  for (let i = 0; i < w + 2 * r; i++) xi[i] = reflect101(i - r, w) * c;
  for (let i = 0; i < h + 2 * r; i++) yi[i] = reflect101(i - r, h) * w * c;
  const src = img.data; const tmp = new Float32Array(w * h * c);
  for (let y = 0; y < h; y++) {
    const row = y * w * c;
    for (let x = 0; x < w; x++) {
      for (let ch = 0; ch < c; ch++) {
        let s = 0; const at = row + ch;
        for (let t = 0; t < n; t++) s += src[at + xi[x + t]] * k[t];
        tmp[row + x * c + ch] = s;
      }
    }
  }
  // The vertical pass a row at a time (each value's sum in the same order of taps).
  const out = makeImage(w, h, c); const o = out.data; const rowLen = w * c;
  const acc = new Float64Array(rowLen);
  for (let y = 0; y < h; y++) {
    acc.fill(0);
    for (let t = 0; t < n; t++) {
      const from = yi[y + t]; const kt = k[t];
      for (let i = 0; i < rowLen; i++) acc[i] += tmp[from + i] * kt;
    }
    const oy = y * rowLen;
    if (eightBit) for (let i = 0; i < rowLen; i++) o[oy + i] = Math.min(255, Math.max(0, Math.round(acc[i])));
    else for (let i = 0; i < rowLen; i++) o[oy + i] = acc[i];
  }
  return out;
}

/** gaussianBlur of a mostly-zero single-channel mask, computed only around its non-zero
 * pixels (the same values: beyond them the blur of zeros is zero). The result's `box`: where
 * it was computed (zero outside it), or null when the mask is empty. */
export function blurMask(mask, sigma, eightBit = false) {
  const r = (gaussianKernel(sigma, eightBit).length - 1) / 2;
  const box = nonZeroBox(mask, r);
  const out = {...makeImage(mask.w, mask.h, 1), box};
  if (!box) return out;
  pasteBox(out, gaussianBlur(cropBox(mask, box), sigma, eightBit), box);
  return out;
}

/** Offsets of cv2.getStructuringElement(MORPH_ELLIPSE, (n, n)). */
function ellipseOffsets(n) {
  const r = Math.floor(n / 2); const c = r; const inv = r ? 1 / (r * r) : 0;
  const offs = [];
  for (let i = 0; i < n; i++) {
    const dy = i - r;
    if (Math.abs(dy) > r) continue;
    const dx = Math.round(c * Math.sqrt((r * r - dy * dy) * inv));
    for (let j = Math.max(c - dx, 0); j < Math.min(c + dx + 1, n); j++) offs.push([j - c, dy]);
  }
  return offs;
}

/** cv2.erode / cv2.dilate of a single-channel mask with an elliptic n x n kernel. */
export function morph(mask, n, dilate) {
  const {w, h} = mask; const md = mask.data;
  const ends = new Map(); // dy -> [lo, hi]: each row of the ellipse is one run of dx
  for (const [dx, dy] of ellipseOffsets(n)) {
    const [lo, hi] = ends.get(dy) ?? [Infinity, -Infinity];
    ends.set(dy, [Math.min(lo, dx), Math.max(hi, dx)]);
  }
  const out = makeImage(w, h, 1, md.constructor);
  // Only pixels near a non-zero one can be non-zero afterwards: work inside that box.
  const box = nonZeroBox(mask, Math.ceil(n / 2) + 1);
  if (!box) return out;
  const bw = box.x1 - box.x0;
  const neutral = dilate ? -Infinity : Infinity;
  // A sliding min/max along x per distinct run, then the rows combined along y. Outside
  // the image counts as neutral (OpenCV's default border for erode and dilate).
  const runs = new Map(); // "lo,hi" -> plane
  const deque = new Int32Array(w);
  const yFrom = Math.max(0, box.y0 - n); const yTo = Math.min(h, box.y1 + n);
  for (const [lo, hi] of ends.values()) {
    const key = `${lo},${hi}`;
    if (runs.has(key)) continue;
    const plane = new Float32Array(bw * h);
    for (let y = yFrom; y < yTo; y++) {
      const row = y * w; const prow = y * bw - box.x0;
      if (hi - lo <= 8) { // a short run: its extreme read directly
        for (let x = box.x0; x < box.x1; x++) {
          const a = Math.max(0, x + lo); const b = Math.min(w - 1, x + hi);
          let v = neutral;
          if (dilate) { for (let t = a; t <= b; t++) if (md[row + t] > v) v = md[row + t]; } else { for (let t = a; t <= b; t++) if (md[row + t] < v) v = md[row + t]; }
          plane[prow + x] = v;
        }
        continue;
      }
      let head = 0; let tail = 0; let next = Math.max(0, box.x0 + lo);
      for (let x = box.x0; x < box.x1; x++) {
        const hiX = Math.min(w - 1, x + hi);
        for (; next <= hiX; next++) {
          const v = md[row + next];
          if (dilate) { while (tail > head && md[row + deque[tail - 1]] <= v) tail--; } else { while (tail > head && md[row + deque[tail - 1]] >= v) tail--; }
          deque[tail++] = next;
        }
        while (head < tail && deque[head] < x + lo) head++;
        plane[prow + x] = head < tail ? md[row + deque[head]] : neutral;
      }
    }
    runs.set(key, plane);
  }
  // Rows combined a whole row at a time (no per-pixel iterators or closures: this loop
  // was most of the live view's texture stage).
  const dys = [...ends.keys()]; const planes = dys.map((dy) => runs.get(ends.get(dy).join(',')));
  const acc = new Float32Array(bw);
  for (let y = box.y0; y < box.y1; y++) {
    acc.fill(neutral);
    for (let j = 0; j < dys.length; j++) {
      const yy = y + dys[j];
      if (yy < 0 || yy >= h) continue;
      const plane = planes[j]; const off = yy * bw;
      if (dilate) {
        for (let x = 0; x < bw; x++) if (plane[off + x] > acc[x]) acc[x] = plane[off + x];
      } else {
        for (let x = 0; x < bw; x++) if (plane[off + x] < acc[x]) acc[x] = plane[off + x];
      }
    }
    out.data.set(acc, y * w + box.x0);
  }
  return out;
}

/** Fill a polygon into a single-channel mask. `aa`: anti-aliased edges (4x4 samples a
 * pixel), as cv2.fillPoly(..., lineType=LINE_AA) softens them. */
export function fillPolygon(mask, pts, value, aa = false) {
  const {w, h} = mask;
  let ymin = Infinity; let ymax = -Infinity;
  for (const [, y] of pts) { ymin = Math.min(ymin, y); ymax = Math.max(ymax, y); }
  const sub = aa ? 4 : 1;
  const y0 = Math.max(0, Math.floor(ymin) - 1); const y1 = Math.min(h - 1, Math.ceil(ymax) + 1);
  const cover = new Float32Array(w);
  const runs = new Int32Array(w + 1); // aa: +1 where a sample run starts, -1 past its end
  for (let y = y0; y <= y1; y++) {
    cover.fill(0);
    if (aa) runs.fill(0);
    for (let s = 0; s < sub; s++) {
      const sy = aa ? y - 0.5 + (s + 0.5) / sub : y;
      const xs = [];
      for (let i = 0; i < pts.length; i++) {
        const [ax, ay] = pts[i]; const [bx, by] = pts[(i + 1) % pts.length];
        if ((ay > sy) !== (by > sy)) xs.push(ax + (sy - ay) * (bx - ax) / (by - ay));
      }
      xs.sort((a, b) => a - b);
      for (let i = 0; i + 1 < xs.length; i += 2) {
        if (aa) {
          for (let q = 0; q < sub; q++) {
            const off = -0.5 + (q + 0.5) / sub;
            const lo = Math.max(0, Math.ceil(xs[i] - off)); const hi = Math.min(w - 1, Math.floor(xs[i + 1] - off));
            if (lo <= hi) { runs[lo]++; runs[hi + 1]--; }
          }
        } else {
          const lo = Math.max(0, Math.ceil(xs[i] - 0.5)); const hi = Math.min(w - 1, Math.floor(xs[i + 1] + 0.5));
          for (let x = lo; x <= hi; x++) cover[x] = 1;
        }
      }
    }
    if (aa) { // samples counted (the same sums as adding 1/16 per sample: exact either way)
      for (let x = 0, n = 0; x < w; x++) { n += runs[x]; cover[x] = n / (sub * sub); }
    }
    for (let x = 0; x < w; x++) {
      if (cover[x] > 0) {
        const i = y * w + x;
        mask.data[i] = Math.max(mask.data[i], Math.round(value * Math.min(1, cover[x])));
      }
    }
  }
}

/** Convex hull (monotone chain) of [x, y] points. */
export function convexHull(points) {
  const p = points.map((q) => [q[0], q[1]]).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  const cross = (o, a, b) => (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]);
  const lower = []; const upper = [];
  for (const q of p) {
    while (lower.length >= 2 && cross(lower.at(-2), lower.at(-1), q) <= 0) lower.pop();
    lower.push(q);
  }
  for (const q of p.slice().reverse()) {
    while (upper.length >= 2 && cross(upper.at(-2), upper.at(-1), q) <= 0) upper.pop();
    upper.push(q);
  }
  return lower.slice(0, -1).concat(upper.slice(0, -1));
}

// ---- colour: cv2.COLOR_RGB2LAB / LAB2RGB on float 0..1 RGB (sRGB gamma, D65) ----
const gammaInExact = (v) => (v <= 0.04045 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4));
const gammaOutExact = (v) => (v <= 0.0031308 ? 12.92 * v : 1.055 * Math.pow(v, 1 / 2.4) - 0.055);
// Both curves tabulated on [0, 1] and interpolated (error < 1e-5): pow() per channel per
// pixel was most of the colour stages' time.
const LUT_SIZE = 8192;
const tabulate = (f) => Float64Array.from({length: LUT_SIZE + 2}, (_, i) => f(Math.min(1, i / LUT_SIZE)));
const GAMMA_IN = tabulate(gammaInExact); const GAMMA_OUT = tabulate(gammaOutExact);
const lookup = (lut, v) => { const f = v * LUT_SIZE; const i = f | 0; return lut[i] + (lut[i + 1] - lut[i]) * (f - i); };
const gammaIn = (v) => lookup(GAMMA_IN, v);
// The same values for whole 0..255 inputs (warped crops are rounded), without the lookup.
const GAMMA_IN_8 = Float64Array.from({length: 256}, (_, k) => gammaIn(Math.min(1, Math.max(0, k * (1 / 255)))));
const gammaIn255 = (v, scale) => {
  const k = v | 0;
  return k === v && k >= 0 && k <= 255 && scale === 1 / 255 ? GAMMA_IN_8[k] : gammaIn(Math.min(1, Math.max(0, v * scale)));
};
const gammaOut = (v) => lookup(GAMMA_OUT, v);
const XN = 0.950456; const ZN = 1.088754;
const labF = (t) => (t > 0.008856 ? Math.cbrt(t) : 7.787 * t + 16 / 116);
const labInv = (t) => (t > 0.206893 ? t * t * t : (t - 16 / 116) / 7.787);

/** RGB (0..255 floats, 3 channels) to LAB (L 0..100). */
export function rgbToLab(img, scale = 1 / 255) {
  const out = makeImage(img.w, img.h, 3);
  const d = img.data; const o = out.data;
  for (let i = 0; i < img.w * img.h; i++) {
    const r = gammaIn255(d[3 * i], scale);
    const g = gammaIn255(d[3 * i + 1], scale);
    const b = gammaIn255(d[3 * i + 2], scale);
    const x = (0.412453 * r + 0.357580 * g + 0.180423 * b) / XN;
    const y = 0.212671 * r + 0.715160 * g + 0.072169 * b;
    const z = (0.019334 * r + 0.119193 * g + 0.950227 * b) / ZN;
    const fx = labF(x); const fy = labF(y); const fz = labF(z);
    o[3 * i] = y > 0.008856 ? 116 * fy - 16 : 903.3 * y;
    o[3 * i + 1] = 500 * (fx - fy);
    o[3 * i + 2] = 200 * (fy - fz);
  }
  return out;
}

/** LAB to RGB 0..255 floats (not clipped; callers clip as the Python side does). */
export function labToRgb(img) {
  const out = makeImage(img.w, img.h, 3);
  const d = img.data; const o = out.data;
  for (let i = 0; i < img.w * img.h; i++) {
    const L = d[3 * i]; const A = d[3 * i + 1]; const B = d[3 * i + 2];
    let y; let fy;
    if (L <= 8) { y = L / 903.3; fy = 7.787 * y + 16 / 116; } else { fy = (L + 16) / 116; y = fy * fy * fy; }
    const fx = A / 500 + fy; const fz = fy - B / 200;
    const x = labInv(fx) * XN; const z = labInv(fz) * ZN;
    const r = 3.240479 * x - 1.53715 * y - 0.498535 * z;
    const g = -0.969256 * x + 1.875991 * y + 0.041556 * z;
    const b = 0.055648 * x - 0.204043 * y + 1.057311 * z;
    o[3 * i] = gammaOut(Math.min(1, Math.max(0, r))) * 255;
    o[3 * i + 1] = gammaOut(Math.min(1, Math.max(0, g))) * 255;
    o[3 * i + 2] = gammaOut(Math.min(1, Math.max(0, b))) * 255;
  }
  return out;
}

/** cv2.bilateralFilter on a float 3-channel image (L1 colour distance, circular window). */
export function bilateral(img, d, sigmaColor, sigmaSpace) {
  const {w, h, c, data} = img;
  const r = Math.floor(d / 2);
  const gc = -0.5 / (sigmaColor * sigmaColor); const gs = -0.5 / (sigmaSpace * sigmaSpace);
  const dxs = []; const dys = []; const wss = [];
  for (let i = -r; i <= r; i++) {
    for (let j = -r; j <= r; j++) {
      const rr = Math.sqrt(i * i + j * j);
      if (rr <= r) { dxs.push(j); dys.push(i); wss.push(Math.exp(rr * rr * gs)); }
    }
  }
  // Colour weight by L1 distance, tabulated at 1/16 steps up to 3 x 255.
  const lut = new Float32Array(3 * 255 * 16 + 2);
  for (let i = 0; i < lut.length; i++) lut[i] = Math.exp((i / 16) * (i / 16) * gc);
  const xi = new Int32Array(w + 2 * r); const yi = new Int32Array(h + 2 * r);
  for (let i = 0; i < w + 2 * r; i++) xi[i] = reflect101(i - r, w) * c;
  for (let i = 0; i < h + 2 * r; i++) yi[i] = reflect101(i - r, h) * w * c;
  const out = makeImage(w, h, c);
  const m = dxs.length;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const p = (y * w + x) * c;
      const p0 = data[p]; const p1 = data[p + 1]; const p2 = data[p + 2];
      let sw = 0; let s0 = 0; let s1 = 0; let s2 = 0;
      for (let t = 0; t < m; t++) {
        const q = yi[y + r + dys[t]] + xi[x + r + dxs[t]];
        const q0 = data[q]; const q1 = data[q + 1]; const q2 = data[q + 2];
        const dist = Math.abs(q0 - p0) + Math.abs(q1 - p1) + Math.abs(q2 - p2);
        const fi = Math.min(dist * 16, lut.length - 2); const i0 = fi | 0;
        const wc = lut[i0] + (lut[i0 + 1] - lut[i0]) * (fi - i0);
        const wt = wss[t] * wc;
        sw += wt; s0 += wt * q0; s1 += wt * q1; s2 += wt * q2;
      }
      out.data[p] = s0 / sw; out.data[p + 1] = s1 / sw; out.data[p + 2] = s2 / sw;
    }
  }
  return out;
}

/** maskBox(mask, (v) => v !== 0, pad), without a call a pixel. */
export function nonZeroBox(mask, pad) {
  const {w, h, data} = mask;
  let x0 = w; let y0 = h; let x1 = -1; let y1 = -1;
  for (let y = 0; y < h; y++) {
    const row = y * w; let first = -1; let last = -1;
    for (let x = 0; x < w; x++) if (data[row + x] !== 0) { if (first < 0) first = x; last = x; }
    if (first < 0) continue;
    if (first < x0) x0 = first; if (last > x1) x1 = last; if (y < y0) y0 = y; y1 = y;
  }
  if (x1 < 0) return null;
  return {x0: Math.max(0, x0 - pad), y0: Math.max(0, y0 - pad),
    x1: Math.min(w, x1 + 1 + pad), y1: Math.min(h, y1 + 1 + pad)};
}

/** Rows y0..y1 and columns x0..x1 (exclusive ends) around pixels where test(v) holds,
 * grown by pad (texture.mask_box); null when none. */
export function maskBox(mask, test, pad) {
  let x0 = Infinity; let y0 = Infinity; let x1 = -1; let y1 = -1;
  for (let y = 0; y < mask.h; y++) {
    for (let x = 0; x < mask.w; x++) {
      if (test(mask.data[y * mask.w + x])) {
        if (x < x0) x0 = x; if (x > x1) x1 = x; if (y < y0) y0 = y; if (y > y1) y1 = y;
      }
    }
  }
  if (x1 < 0) return null;
  return {x0: Math.max(0, x0 - pad), y0: Math.max(0, y0 - pad),
    x1: Math.min(mask.w, x1 + 1 + pad), y1: Math.min(mask.h, y1 + 1 + pad)};
}

export function cropBox(img, b) {
  const w = b.x1 - b.x0; const h = b.y1 - b.y0;
  const out = makeImage(w, h, img.c, img.data.constructor);
  for (let y = 0; y < h; y++) {
    const src = ((b.y0 + y) * img.w + b.x0) * img.c;
    out.data.set(img.data.subarray(src, src + w * img.c), y * w * img.c);
  }
  return out;
}

export function pasteBox(img, part, b) {
  for (let y = 0; y < part.h; y++) {
    img.data.set(part.data.subarray(y * part.w * part.c, (y + 1) * part.w * part.c),
        ((b.y0 + y) * img.w + b.x0) * img.c);
  }
}
