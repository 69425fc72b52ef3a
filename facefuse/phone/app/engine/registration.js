// Feature registration (stages/geometry.py: feature_shifts, register_landmarks): after the
// mesh warp, the warped source's nose and eyes are lined up with the warped template's by
// phase correlation of their fine detail, so a landmark model's person-specific bias of a
// few pixels does not turn the result's head. Constants come from contract.register.
import {centreOf} from './geometry.js';
import {gaussianBlur, makeImage} from './raster.js';

/** Smallest 2^a 3^b 5^c >= n (cv2.getOptimalDFTSize). */
function optimalSize(n) {
  for (let m = Math.max(1, n); ; m++) {
    let k = m;
    for (const p of [2, 3, 5]) while (k % p === 0) k /= p;
    if (k === 1) return m;
  }
}

/** In-place 2D DFT of an n x n complex array (re, im), rows then columns; `inverse`
 * unscaled, as cv2.idft without DFT_SCALE. A plain DFT per line: n is under 100 here. */
function dft2(re, im, n, inverse) {
  const cos = new Float64Array(n); const sin = new Float64Array(n);
  const sign = inverse ? 1 : -1;
  for (let k = 0; k < n; k++) { cos[k] = Math.cos((2 * Math.PI * k) / n); sin[k] = sign * Math.sin((2 * Math.PI * k) / n); }
  const lr = new Float64Array(n); const li = new Float64Array(n);
  for (const [lineStep, elemStep] of [[n, 1], [1, n]]) { // rows, then columns
    for (let line = 0; line < n; line++) {
      const base = line * lineStep;
      for (let j = 0; j < n; j++) { lr[j] = re[base + j * elemStep]; li[j] = im[base + j * elemStep]; }
      for (let k = 0; k < n; k++) {
        let sr = 0; let si = 0;
        for (let j = 0, t = 0; j < n; j++) {
          const c = cos[t]; const s = sin[t];
          sr += lr[j] * c - li[j] * s; si += lr[j] * s + li[j] * c;
          t += k; if (t >= n) t -= n;
        }
        re[base + k * elemStep] = sr; im[base + k * elemStep] = si;
      }
    }
  }
}

/** cv2.phaseCorrelate(a, b, createHanningWindow) for square single-channel patches:
 * [dx, dy] by which b sits off a, and the peak's response. */
function phaseCorrelate(a, b, side) {
  const n = optimalSize(side);
  const win = new Float64Array(side);
  for (let i = 0; i < side; i++) win[i] = 0.5 * (1 - Math.cos((2 * Math.PI * i) / (side - 1)));
  const spectrum = (img) => {
    const re = new Float64Array(n * n); const im = new Float64Array(n * n);
    for (let y = 0; y < side; y++) {
      for (let x = 0; x < side; x++) re[y * n + x] = img[y * side + x] * Math.fround(Math.sqrt(win[y] * win[x]));
    }
    dft2(re, im, n, false);
    return [re, im];
  };
  const [ar, ai] = spectrum(a); const [br, bi] = spectrum(b);
  const cr = new Float64Array(n * n); const ci = new Float64Array(n * n);
  for (let i = 0; i < n * n; i++) {
    const pr = ar[i] * br[i] + ai[i] * bi[i]; const pi = ai[i] * br[i] - ar[i] * bi[i]; // a * conj(b)
    const mag = Math.hypot(pr, pi) + 1e-300;
    cr[i] = pr / mag; ci[i] = pi / mag;
  }
  dft2(cr, ci, n, true);
  // fftShift: the zero shift moves to the centre.
  const half = Math.floor(n / 2);
  const at = (x, y) => cr[((y + n - half) % n) * n + ((x + n - half) % n)];
  let px = 0; let py = 0; let best = -Infinity;
  for (let y = 0; y < n; y++) for (let x = 0; x < n; x++) { const v = at(x, y); if (v > best) { best = v; px = x; py = y; } }
  let sum = 0; let sx = 0; let sy = 0;
  for (let y = Math.max(0, py - 2); y <= Math.min(n - 1, py + 2); y++) {
    for (let x = Math.max(0, px - 2); x <= Math.min(n - 1, px + 2); x++) { const v = at(x, y); sum += v; sx += x * v; sy += y * v; }
  }
  return {shift: [n / 2 - sx / sum, n / 2 - sy / sum], response: sum / (n * n)};
}

/** Grey fine detail of a box of an RGB image (grey minus a Gaussian blur of sigma 3). */
function detail(img, x0, y0, side) {
  const grey = makeImage(side, side, 1);
  for (let y = 0; y < side; y++) {
    for (let x = 0; x < side; x++) {
      const i = ((y0 + y) * img.w + x0 + x) * 3;
      const c = (k) => Math.min(255, Math.max(0, img.data[i + k]));
      grey.data[y * side + x] = Math.fround(0.299 * c(0) + 0.587 * c(1) + 0.114 * c(2));
    }
  }
  const blur = gaussianBlur(grey, 3.0);
  for (let i = 0; i < grey.data.length; i++) grey.data[i] -= blur.data[i];
  return grey.data;
}

const eyeDistance = (shape) => Math.hypot(shape[468][0] - shape[473][0], shape[468][1] - shape[473][1]);

/** Per feature, the [dx, dy] by which the warped source's feature sits off the warped
 * template's (both on the fused `shape`); [0, 0] where unsure. */
export function featureShifts(srcWarped, tplWarped, shape, register) {
  const size = srcWarped.w; const iod = eyeDistance(shape);
  const shifts = {};
  for (const [name, [points, halfSide]] of Object.entries(register.features)) {
    const [cx, cy] = centreOf(shape, points);
    const h = Math.round(halfSide * iod);
    const x0 = Math.round(cx) - h; const y0 = Math.round(cy) - h;
    if (x0 < 0 || y0 < 0 || x0 + 2 * h > size || y0 + 2 * h > size || h < 8) { shifts[name] = [0, 0]; continue; }
    const {shift, response} = phaseCorrelate(detail(tplWarped, x0, y0, 2 * h), detail(srcWarped, x0, y0, 2 * h), 2 * h);
    shifts[name] = response < register.min_response || Math.hypot(...shift) > register.max * iod ? [0, 0] : shift;
  }
  return shifts;
}

/** The source's landmark points ([x, y] list) moved so that warping onto `shape` puts each
 * feature where the template's is. */
export function registerPoints(points, shape, shifts, register) {
  const iod = eyeDistance(shape);
  const out = points.map(([x, y]) => [x, y]);
  for (const [name, shift] of Object.entries(shifts)) {
    if (!shift[0] && !shift[1]) continue;
    const [cx, cy] = centreOf(shape, register.features[name][0]);
    const scale = register.falloff * iod;
    for (let i = 0; i < out.length; i++) {
      const d = Math.hypot(shape[i][0] - cx, shape[i][1] - cy) / scale;
      const wgt = Math.exp(-(d * d));
      out[i][0] += wgt * shift[0]; out[i][1] += wgt * shift[1];
    }
  }
  return out;
}
