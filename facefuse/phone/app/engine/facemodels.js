// Landmarks on the CPU: MediaPipe's own .tflite files (the mediapipe wheel's face detector,
// face landmark and iris models, Apache-2.0) on LiteRT.js, with MediaPipe's graph logic
// written out here: the detector's anchors, decoding and weighted non-max suppression, the
// rotated region of interest (scale 1.5 around the face, turned by the eye line), the face
// presence score, and the iris model on each eye for the 478-point layout of Face Mesh with
// refined landmarks. Everything works on plain {w, h, c, data} pixel arrays (RGB or RGBA),
// so it runs on a page or in a Worker.
import {compileModel, runModel} from './litert.js';

const DETECT_SIDE = 128; // face_detection_short_range
const MESH_SIDE = 192; // face_landmark
const IRIS_SIDE = 64; // iris_landmark
const ROI_SCALE = 1.5; // face_landmark_front: the face's box grown by half, squared
const EYE_SCALE = 2.3; // iris_landmark_landmarks_to_roi
const PRESENCE = 0.5; // a face is there when sigmoid(face flag) is above this
const NMS_IOU = 0.3;
const MESH_POINTS = 468;
// The eye whose iris comes first in the 478 layout (468..472) has its corners at 33 / 133,
// the other (473..477) at 362 / 263; the iris model sees the second one mirrored, so its
// iris points 1 and 3 (the iris's two sides) swap places when mirrored back.
const EYES = [{corners: [33, 133], flip: false, order: [0, 1, 2, 3, 4]},
  {corners: [362, 263], flip: true, order: [0, 3, 2, 1, 4]}];

/** SSD anchor centres of the short-range detector (strides 8, 16, 16, 16; 2 anchors per
 * cell on the 16x16 grid, 6 on the 8x8 one), as MediaPipe's SsdAnchorsCalculator makes them. */
function anchors() {
  const out = [];
  for (const [grid, per] of [[16, 2], [8, 6]]) {
    for (let y = 0; y < grid; y++) {
      for (let x = 0; x < grid; x++) for (let k = 0; k < per; k++) out.push((x + 0.5) / grid, (y + 0.5) / grid);
    }
  }
  return Float32Array.from(out);
}
const ANCHORS = anchors();

const sigmoid = (v) => 1 / (1 + Math.exp(-Math.min(100, Math.max(-100, v))));

/** Sample the rotated square `rect` {cx, cy, side, angle} of `img` into `out` (side x side
 * x 3 floats, NHWC), pixel values mapped from 0..255 to lo..hi. Outside the image: the
 * nearest edge pixel, or `fill` (a 0..255 value) when given. `flip` mirrors left-right. */
export function sampleRect(img, rect, n, out, lo, hi, fill = null, flip = false) {
  const {w, h, c, data} = img;
  const k = (hi - lo) / 255;
  const cos = Math.cos(rect.angle); const sin = Math.sin(rect.angle);
  const step = rect.side / n;
  // Image position of output pixel (u, v): origin + u * du + v * dv (pixel centres).
  const ux = cos * step; const uy = sin * step; const vx = -sin * step; const vy = cos * step;
  const half = (n - 1) / 2;
  const ox = rect.cx - half * ux - half * vx - 0.5; const oy = rect.cy - half * uy - half * vy - 0.5;
  const fillValue = fill === null ? 0 : lo + fill * k;
  const rowStride = w * c;
  for (let v = 0; v < n; v++) {
    for (let u = 0; u < n; u++) {
      const uu = flip ? n - 1 - u : u;
      const fx = ox + uu * ux + v * vx; const fy = oy + uu * uy + v * vy;
      const o = (v * n + u) * 3;
      let x0 = Math.floor(fx); let y0 = Math.floor(fy);
      let ax = fx - x0; let ay = fy - y0;
      let p00; let p01; let p10; let p11;
      if (x0 >= 0 && y0 >= 0 && x0 < w - 1 && y0 < h - 1) { // all four taps inside: most pixels
        p00 = y0 * rowStride + x0 * c; p01 = p00 + c; p10 = p00 + rowStride; p11 = p10 + c;
      } else {
        if (fill !== null && (fx < -0.5 || fy < -0.5 || fx > w - 0.5 || fy > h - 0.5)) {
          out[o] = fillValue; out[o + 1] = fillValue; out[o + 2] = fillValue;
          continue;
        }
        if (x0 < 0) { x0 = 0; ax = 0; } else if (x0 >= w - 1) { x0 = w - 1; ax = 0; }
        if (y0 < 0) { y0 = 0; ay = 0; } else if (y0 >= h - 1) { y0 = h - 1; ay = 0; }
        const x1 = ax > 0 ? x0 + 1 : x0; const y1 = ay > 0 ? y0 + 1 : y0;
        p00 = (y0 * w + x0) * c; p01 = (y0 * w + x1) * c; p10 = (y1 * w + x0) * c; p11 = (y1 * w + x1) * c;
      }
      for (let ch = 0; ch < 3; ch++) {
        const top = data[p00 + ch] + (data[p01 + ch] - data[p00 + ch]) * ax;
        const bot = data[p10 + ch] + (data[p11 + ch] - data[p10 + ch]) * ax;
        out[o + ch] = lo + (top + (bot - top) * ay) * k;
      }
    }
  }
  return out;
}

/** Image position of a point given in the rect's n x n sample grid (inverse of sampleRect). */
function fromRect(rect, n, x, y) {
  const cos = Math.cos(rect.angle); const sin = Math.sin(rect.angle);
  const nx = (x / n - 0.5) * rect.side; const ny = (y / n - 0.5) * rect.side;
  return [rect.cx + nx * cos - ny * sin, rect.cy + nx * sin + ny * cos];
}

/** Weighted non-max suppression (MediaPipe's WEIGHTED mode): each kept detection is the
 * score-weighted mean of the ones it overlaps by IoU > 0.3. */
function weightedNms(dets) {
  dets.sort((a, b) => b.score - a.score);
  const kept = [];
  const iou = (a, b) => {
    const ix = Math.max(0, Math.min(a.x1, b.x1) - Math.max(a.x0, b.x0));
    const iy = Math.max(0, Math.min(a.y1, b.y1) - Math.max(a.y0, b.y0));
    const u = (a.x1 - a.x0) * (a.y1 - a.y0) + (b.x1 - b.x0) * (b.y1 - b.y0) - ix * iy;
    return u > 0 ? (ix * iy) / u : 0;
  };
  let rest = dets;
  while (rest.length) {
    const top = rest[0];
    const group = rest.filter((d) => iou(top, d) > NMS_IOU);
    rest = rest.filter((d) => iou(top, d) <= NMS_IOU);
    const total = group.reduce((s, d) => s + d.score, 0);
    const mean = (key) => group.reduce((s, d) => s + d[key] * d.score, 0) / total;
    const keypoints = top.keypoints.map((_, i) => group.reduce((s, d) => s + d.keypoints[i] * d.score, 0) / total);
    kept.push({x0: mean('x0'), y0: mean('y0'), x1: mean('x1'), y1: mean('y1'), score: top.score, keypoints});
  }
  return kept;
}

/** The ROI Face Mesh takes from a detection: the box's centre, its long side x 1.5,
 * turned so the eyes (key points 0 and 1) lie level. */
export function roiFromDetection(det) {
  const [rx, ry, lx, ly] = det.keypoints;
  const side = ROI_SCALE * Math.max(det.x1 - det.x0, det.y1 - det.y0);
  return {cx: (det.x0 + det.x1) / 2, cy: (det.y0 + det.y1) / 2, side, angle: Math.atan2(ly - ry, lx - rx)};
}

/** The next frame's ROI from this frame's landmarks (face_landmark_landmarks_to_roi): the
 * points' box centre, its long side x 1.5, turned by the line from point 33 to 263. */
export function roiFromLandmarks(lm) {
  let x0 = Infinity; let y0 = Infinity; let x1 = -Infinity; let y1 = -Infinity;
  for (let i = 0; i < MESH_POINTS; i++) {
    const x = lm[3 * i]; const y = lm[3 * i + 1];
    if (x < x0) x0 = x; if (x > x1) x1 = x; if (y < y0) y0 = y; if (y > y1) y1 = y;
  }
  const angle = Math.atan2(lm[3 * 263 + 1] - lm[3 * 33 + 1], lm[3 * 263] - lm[3 * 33]);
  return {cx: (x0 + x1) / 2, cy: (y0 + y1) / 2, side: ROI_SCALE * Math.max(x1 - x0, y1 - y0), angle};
}

/** The three models, compiled once; `urls`: {detector, mesh, iris} file addresses. */
export async function loadFaceModels(base, urls) {
  const [detector, mesh, iris] = await Promise.all(
      [urls.detector, urls.mesh, urls.iris].map((u) => compileModel(base, u)));
  return {
    detector, mesh, iris,
    detectInput: new Float32Array(DETECT_SIDE * DETECT_SIDE * 3),
    meshInput: new Float32Array(MESH_SIDE * MESH_SIDE * 3),
    irisInput: new Float32Array(IRIS_SIDE * IRIS_SIDE * 3),
  };
}

/** Faces the short-range detector finds in `img` (seen whole, letterboxed to 128 px),
 * scoring at least `threshold`: [{x0, y0, x1, y1, score, keypoints (6 x [x, y])}] in
 * image pixels, best first. */
export async function detect(models, img, threshold) {
  const side = Math.max(img.w, img.h);
  const frame = {cx: img.w / 2, cy: img.h / 2, side, angle: 0};
  sampleRect(img, frame, DETECT_SIDE, models.detectInput, -1, 1, 0);
  const [boxes, scores] = await runModel(models.detector, models.detectInput, [1, DETECT_SIDE, DETECT_SIDE, 3]);
  const x0 = frame.cx - side / 2; const y0 = frame.cy - side / 2;
  const dets = [];
  for (let i = 0; i < scores.length; i++) {
    const score = sigmoid(scores[i]);
    if (score < threshold) continue;
    const r = i * 16; const ax = ANCHORS[2 * i]; const ay = ANCHORS[2 * i + 1];
    const cx = boxes[r] / DETECT_SIDE + ax; const cy = boxes[r + 1] / DETECT_SIDE + ay;
    const bw = boxes[r + 2] / DETECT_SIDE; const bh = boxes[r + 3] / DETECT_SIDE;
    const keypoints = [];
    for (let k = 0; k < 6; k++) {
      keypoints.push(x0 + (boxes[r + 4 + 2 * k] / DETECT_SIDE + ax) * side,
          y0 + (boxes[r + 5 + 2 * k] / DETECT_SIDE + ay) * side);
    }
    dets.push({x0: x0 + (cx - bw / 2) * side, y0: y0 + (cy - bh / 2) * side,
      x1: x0 + (cx + bw / 2) * side, y1: y0 + (cy + bh / 2) * side, score, keypoints});
  }
  return weightedNms(dets);
}

/** The eye `e`'s five iris points of `prev` (a 478-point layout) moved with that eye's
 * corners from `prev` to `lm` (the similarity the corner pair gives), into `out`; z at the
 * corners' mean as irises() sets it. */
function carryIris(e, prev, lm, out) {
  const [a, b] = EYES[e].corners;
  const px = prev[3 * a]; const py = prev[3 * a + 1];
  const ex = prev[3 * b] - px; const ey = prev[3 * b + 1] - py; // the eye's line before
  const fx = lm[3 * b] - lm[3 * a]; const fy = lm[3 * b + 1] - lm[3 * a + 1]; // and now
  const d = Math.max(ex * ex + ey * ey, 1e-9);
  const zr = (fx * ex + fy * ey) / d; const zi = (fy * ex - fx * ey) / d; // now / before, complex
  const z = (lm[3 * a + 2] + lm[3 * b + 2]) / 2;
  for (let p = 0; p < 5; p++) {
    const i = 3 * (MESH_POINTS + 5 * e + p);
    const qx = prev[i] - px; const qy = prev[i + 1] - py;
    out[15 * e + 3 * p] = lm[3 * a] + zr * qx - zi * qy;
    out[15 * e + 3 * p + 1] = lm[3 * a + 1] + zi * qx + zr * qy;
    out[15 * e + 3 * p + 2] = z;
  }
}

/** The 10 iris points (468..477) from the iris model on each eye in `eyes` (0: the first
 * in the 478 layout, 1: the second), z at the eye corners' mean; an eye not in `eyes` has
 * its points carried from `prev` (the last frame's landmarks) with its corners. */
async function irises(models, img, lm, eyes = [0, 1], prev = null) {
  const out = new Float64Array(30);
  for (let e = 0; e < 2; e++) {
    if (prev && !eyes.includes(e)) { carryIris(e, prev, lm, out); continue; }
    const [a, b] = EYES[e].corners;
    const ax = lm[3 * a]; const ay = lm[3 * a + 1]; const bx = lm[3 * b]; const by = lm[3 * b + 1];
    const rect = {cx: (ax + bx) / 2, cy: (ay + by) / 2,
      side: EYE_SCALE * Math.max(Math.abs(bx - ax), Math.abs(by - ay)), angle: Math.atan2(by - ay, bx - ax)};
    sampleRect(img, rect, IRIS_SIDE, models.irisInput, 0, 1, null, EYES[e].flip);
    const [, iris] = await runModel(models.iris, models.irisInput, [1, IRIS_SIDE, IRIS_SIDE, 3]);
    const z = (lm[3 * a + 2] + lm[3 * b + 2]) / 2;
    for (let p = 0; p < 5; p++) {
      const q = EYES[e].order[p];
      const x = EYES[e].flip ? IRIS_SIDE - iris[3 * q] : iris[3 * q];
      const [px, py] = fromRect(rect, IRIS_SIDE, x, iris[3 * q + 1]);
      out[15 * e + 3 * p] = px; out[15 * e + 3 * p + 1] = py; out[15 * e + 3 * p + 2] = z;
    }
  }
  return out;
}

/** Face landmarks inside `roi`: {landmarks (Float64Array 478 x 3, image pixels; z in
 * pixels as the Python analyser's), presence}, or null when no face is there. `eyes` and
 * `prev`: as irises() takes them (by default both irises are looked at). */
export async function landmarksIn(models, img, roi, eyes = [0, 1], prev = null) {
  sampleRect(img, roi, MESH_SIDE, models.meshInput, 0, 1);
  const [points, flag] = await runModel(models.mesh, models.meshInput, [1, MESH_SIDE, MESH_SIDE, 3]);
  const presence = sigmoid(flag[0]);
  if (presence < PRESENCE) return null;
  const lm = new Float64Array((MESH_POINTS + 10) * 3);
  const zScale = roi.side / MESH_SIDE;
  for (let i = 0; i < MESH_POINTS; i++) {
    const [x, y] = fromRect(roi, MESH_SIDE, points[3 * i], points[3 * i + 1]);
    lm[3 * i] = x; lm[3 * i + 1] = y; lm[3 * i + 2] = points[3 * i + 2] * zScale;
  }
  lm.set(await irises(models, img, lm, eyes, prev), 3 * MESH_POINTS);
  return {landmarks: lm, presence};
}

/** Face Mesh's video mode: the last frame's landmarks give this frame's ROI; the detector
 * runs only when there is no face to follow (the first frame, or the face was lost). While
 * following, the iris model looks at one eye a frame, in turn (the other eye's iris moves
 * with its corners): two iris runs were half the landmark stage's time, and a gaze a frame
 * old is not visible at camera rates. */
export class FaceTracker {
  constructor(models, threshold = 0.5) {
    this.models = models; this.threshold = threshold; this.roi = null; this.prev = null; this.turn = 0;
  }

  /** The main face of `img` ({box, score, landmarks}), or null. */
  async track(img) {
    for (let attempt = 0; attempt < 2; attempt++) {
      const followed = this.roi !== null;
      if (!followed) {
        const [best] = await detect(this.models, img, this.threshold);
        if (!best) return null;
        this.roi = roiFromDetection(best);
      }
      // (the first frame followed from a detection looks at both eyes: the detector's ROI
      // differs from the mesh's, and so do the irises found in it)
      const prev = followed ? this.prev : null;
      this.turn ^= 1;
      const found = await landmarksIn(this.models, img, this.roi, [this.turn], prev);
      if (found) {
        this.roi = roiFromLandmarks(found.landmarks);
        this.prev = followed ? found.landmarks : null;
        return {box: boxOf(found.landmarks), score: found.presence, landmarks: found.landmarks};
      }
      this.roi = null; this.prev = null;
      if (!followed) return null; // lost while following: look for it again in this frame
    }
    return null;
  }

  reset() { this.roi = null; this.prev = null; }
}

/** The axis-aligned box of the landmarks (as the Python analyser's track()). */
export function boxOf(lm) {
  let x0 = Infinity; let y0 = Infinity; let x1 = -Infinity; let y1 = -Infinity;
  for (let i = 0; i < lm.length / 3; i++) {
    const x = lm[3 * i]; const y = lm[3 * i + 1];
    if (x < x0) x0 = x; if (x > x1) x1 = x; if (y < y0) y0 = y; if (y > y1) y1 = y;
  }
  return [x0, y0, x1, y1];
}
