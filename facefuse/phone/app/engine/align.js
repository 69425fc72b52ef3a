// Align: a similarity from five key points to the canonical crop (stages/align.py).
import {makeImage, resizeArea, warpAffineInverse} from './raster.js';

/** Least-squares 2D similarity taking src to dst (Umeyama with scale; no reflection):
 * returns [[a, -b, tx], [b, a, ty]]. */
export function similarity(src, dst) {
  const n = src.length;
  let msx = 0; let msy = 0; let mdx = 0; let mdy = 0;
  for (let i = 0; i < n; i++) { msx += src[i][0]; msy += src[i][1]; mdx += dst[i][0]; mdy += dst[i][1]; }
  msx /= n; msy /= n; mdx /= n; mdy /= n;
  let sxx = 0; let dot = 0; let crs = 0;
  for (let i = 0; i < n; i++) {
    const sx = src[i][0] - msx; const sy = src[i][1] - msy;
    const dx = dst[i][0] - mdx; const dy = dst[i][1] - mdy;
    sxx += sx * sx + sy * sy; dot += sx * dx + sy * dy; crs += sx * dy - sy * dx;
  }
  const a = dot / Math.max(sxx, 1e-12); const b = crs / Math.max(sxx, 1e-12);
  return [[a, -b, mdx - (a * msx - b * msy)], [b, a, mdy - (b * msx + a * msy)]];
}

export function invertAffine(m) {
  const [[a, b, c], [d, e, f]] = m;
  const det = a * e - b * d;
  const ia = e / det; const ib = -b / det; const id = -d / det; const ie = a / det;
  return [[ia, ib, -(ia * c + ib * f)], [id, ie, -(id * c + ie * f)]];
}

export function applyAffine(m, p) {
  return [m[0][0] * p[0] + m[0][1] * p[1] + m[0][2], m[1][0] * p[0] + m[1][1] * p[1] + m[1][2]];
}

/** 3x3 product of two 2x3 affine matrices (a after b). */
export function composeAffine(a, b) {
  return [0, 1].map((r) => [
    a[r][0] * b[0][0] + a[r][1] * b[1][0],
    a[r][0] * b[0][1] + a[r][1] * b[1][1],
    a[r][0] * b[0][2] + a[r][1] * b[1][2] + a[r][2]]);
}

export function keypoints(landmarks, lm) {
  return [lm.right_iris, lm.left_iris, lm.nose_tip, lm.mouth_right, lm.mouth_left]
      .map((i) => [landmarks[3 * i], landmarks[3 * i + 1]]);
}

/** Cut `face` out of `rgb` (uint8 or float RGB) into a size x size canonical crop:
 * {crop (float), landmarks (Float64Array 478x3, crop pixels), toCrop, toImage, size}. */
export function alignFace(rgb, face, size, contract) {
  const canon = contract.canonical_keypoints.map(([x, y]) => [x * size, y * size]);
  const toCrop = similarity(keypoints(face.landmarks, contract.landmarks), canon);
  const scale = Math.hypot(toCrop[0][0], toCrop[1][0]);
  let source = rgb; let warp = toCrop;
  if (scale < 0.8) {
    // Shrink the part of the photo the crop covers with area averaging first (no aliasing).
    const inv = invertAffine(toCrop);
    const corners = [[0, 0], [size, 0], [0, size], [size, size]].map((p) => applyAffine(inv, p));
    const xs = corners.map((p) => p[0]); const ys = corners.map((p) => p[1]);
    const clamp = (v, hi) => Math.min(Math.max(v, 0), hi);
    const x0 = clamp(Math.floor(Math.min(...xs)) - 2, rgb.w); const y0 = clamp(Math.floor(Math.min(...ys)) - 2, rgb.h);
    const x1 = clamp(Math.ceil(Math.max(...xs)) + 2, rgb.w); const y1 = clamp(Math.ceil(Math.max(...ys)) + 2, rgb.h);
    if (x1 - x0 >= 2 && y1 - y0 >= 2) {
      const part = makeImage(x1 - x0, y1 - y0, 3);
      for (let y = y0; y < y1; y++) {
        for (let x = x0; x < x1; x++) {
          for (let k = 0; k < 3; k++) part.data[((y - y0) * part.w + x - x0) * 3 + k] = rgb.data[(y * rgb.w + x) * 3 + k];
        }
      }
      const sw = Math.max(1, Math.round((x1 - x0) * scale)); const sh = Math.max(1, Math.round((y1 - y0) * scale));
      source = resizeArea(part, sw, sh);
      const fx = sw / (x1 - x0); const fy = sh / (y1 - y0);
      warp = composeAffine(composeAffine(toCrop, [[1, 0, x0], [0, 1, y0]]), [[1 / fx, 0, 0], [0, 1 / fy, 0]]);
    }
  }
  const crop = warpAffineInverse(source, invertAffine(warp), size, size, 'replicate');
  const n = face.landmarks.length / 3;
  const landmarks = new Float64Array(n * 3);
  for (let i = 0; i < n; i++) {
    const p = applyAffine(toCrop, [face.landmarks[3 * i], face.landmarks[3 * i + 1]]);
    landmarks[3 * i] = p[0]; landmarks[3 * i + 1] = p[1]; landmarks[3 * i + 2] = face.landmarks[3 * i + 2] * scale;
  }
  return {crop, landmarks, toCrop, toImage: invertAffine(toCrop), size};
}
