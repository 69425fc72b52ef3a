// Geometry: the fused face shape and the piecewise-affine warp onto it (stages/geometry.py).
import Delaunator from '../vendor/delaunator/index.js';
import {similarity} from './align.js';
import {remap} from './raster.js';

const sub = (a, b) => [a[0] - b[0], a[1] - b[1], a[2] - b[2]];
const dot = (a, b) => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
const norm = (a) => Math.sqrt(dot(a, a));
const pt3 = (lm, i) => [lm[3 * i], lm[3 * i + 1], lm[3 * i + 2]];

/** Columns: the head's right, down and forward axes. Returned as rows [x, y, z]. */
export function headRotation(lm, L) {
  let x = sub(pt3(lm, L.left_eye_outer), pt3(lm, L.right_eye_outer));
  let y = sub(pt3(lm, L.chin), pt3(lm, L.forehead));
  x = x.map((v) => v / (norm(x) + 1e-9));
  const p = dot(y, x); y = y.map((v, i) => v - x[i] * p);
  y = y.map((v) => v / (norm(y) + 1e-9));
  const z = [x[1] * y[2] - x[2] * y[1], x[2] * y[0] - x[0] * y[2], x[0] * y[1] - x[1] * y[0]];
  return [x, y, z];
}

function notLips(n, lips) {
  const set = new Set(lips); const out = [];
  for (let i = 0; i < n; i++) if (!set.has(i)) out.push(i);
  return out;
}

function frontal(lm, L, keep) {
  const n = lm.length / 3; const mean = [0, 0, 0];
  for (const i of keep) for (let k = 0; k < 3; k++) mean[k] += lm[3 * i + k] / keep.length;
  const [ax, ay, az] = headRotation(lm, L);
  const out = [];
  for (let i = 0; i < n; i++) {
    const c = sub(pt3(lm, i), mean);
    out.push([dot(c, ax), dot(c, ay), dot(c, az)]);
  }
  return out;
}

/** (N, 2) image-plane move turning the template's shape into the source's, in the
 * template's pose. */
export function shapeDifference(srcLm, tplLm, contract) {
  const L = contract.landmarks; const keep = notLips(L.count, contract.mesh.LIPS_POINTS);
  const s = frontal(srcLm, L, keep); const t = frontal(tplLm, L, keep);
  const m = similarity(keep.map((i) => s[i]), keep.map((i) => t[i]));
  const scale = Math.sqrt(Math.abs(m[0][0] * m[1][1] - m[0][1] * m[1][0]));
  const [ax, ay, az] = headRotation(tplLm, L);
  return s.map((p, i) => {
    const d = [m[0][0] * p[0] + m[0][1] * p[1] + m[0][2] - t[i][0],
      m[1][0] * p[0] + m[1][1] * p[1] + m[1][2] - t[i][1], 0];
    void scale; // depth is dropped: the move stays in the face plane
    // diff @ R.T: image-plane components of the move.
    return [d[0] * ax[0] + d[1] * ay[0] + d[2] * az[0], d[0] * ax[1] + d[1] * ay[1] + d[2] * az[1]];
  });
}

function insidePolygon(p, poly) {
  let inside = false;
  for (let i = 0; i < poly.length; i++) {
    const [x0, y0] = poly[i]; const [x1, y1] = poly[(i + 1) % poly.length];
    if ((y0 > p[1]) !== (y1 > p[1]) && p[0] < (x1 - x0) * (p[1] - y0) / (y1 - y0 + 1e-12) + x0) inside = !inside;
  }
  return inside;
}

export function mouthPoints(lm, contract) {
  const outer = contract.mesh.OUTER_LIPS_LOOP.map((i) => [lm[3 * i], lm[3 * i + 1]]);
  const set = new Set(contract.mesh.LIPS_POINTS);
  for (let i = 0; i < contract.landmarks.count; i++) {
    if (insidePolygon([lm[3 * i], lm[3 * i + 1]], outer)) set.add(i);
  }
  return [...set].sort((a, b) => a - b);
}

/** Target 2D shape (array of [x, y]): template + shapeRatio x difference, the mouth moved
 * only by its mean shift so the template keeps its expression. */
export function fuseShape(srcLm, tplLm, shapeRatio, contract) {
  const shift = shapeDifference(srcLm, tplLm, contract);
  const mouth = mouthPoints(tplLm, contract);
  const mean = [0, 0];
  for (const i of mouth) { mean[0] += shift[i][0] / mouth.length; mean[1] += shift[i][1] / mouth.length; }
  const n = contract.landmarks.count;
  const pts = Array.from({length: n}, (_, i) => [tplLm[3 * i], tplLm[3 * i + 1]]);
  const outer = contract.mesh.OUTER_LIPS_LOOP.map((i) => pts[i]);
  const width = Math.hypot(Math.max(...outer.map((p) => p[0])) - Math.min(...outer.map((p) => p[0])),
      Math.max(...outer.map((p) => p[1])) - Math.min(...outer.map((p) => p[1])));
  const mouthSet = new Set(mouth);
  return pts.map((p, i) => {
    let dmin = Infinity;
    for (const j of mouth) { const dx = p[0] - pts[j][0]; const dy = p[1] - pts[j][1]; dmin = Math.min(dmin, dx * dx + dy * dy); }
    dmin = Math.sqrt(dmin); // (squares compared: Math.hypot per pair was most of this stage)
    const ease = Math.exp(-((dmin / (0.3 * width + 1e-6)) ** 2));
    let sx = shift[i][0] + ease * (mean[0] - shift[i][0]);
    let sy = shift[i][1] + ease * (mean[1] - shift[i][1]);
    if (mouthSet.has(i)) { sx = mean[0]; sy = mean[1]; }
    return [Math.fround(p[0] + shapeRatio * sx), Math.fround(p[1] + shapeRatio * sy)];
  });
}

export function anchorPoints(shape, size, contract) {
  const oval = contract.mesh.FACE_OVAL_LOOP.map((i) => shape[i]);
  const cx = oval.reduce((s, p) => s + p[0], 0) / oval.length;
  const cy = oval.reduce((s, p) => s + p[1], 0) / oval.length;
  const k = contract.constants.anchor_ring;
  const ring = oval.map((p) => [cx + k * (p[0] - cx), cy + k * (p[1] - cy)]);
  const edge = [0, 1, 2, 3, 4].map((i) => (i * (size - 1)) / 4);
  const border = [];
  for (const x of edge) for (const y of edge) if (x === 0 || x === size - 1 || y === 0 || y === size - 1) border.push([x, y]);
  return ring.concat(border);
}

/** Where each grid node of the crop falls in the triangulated target shape (MeshPlan). */
export function buildPlan(toPts, anchors, size, contract) {
  const step = contract.constants.grid_step;
  const dst = toPts.concat(anchors);
  const tri = Delaunator.from(dst);
  const n = Math.floor(size / step) + 1;
  const nodes = n * n;
  const vertices = new Int32Array(nodes * 3); const weights = new Float64Array(nodes * 3);
  const outside = new Uint8Array(nodes).fill(1);
  const ring = anchors.slice(0, contract.mesh.FACE_OVAL_LOOP.length);
  const lo = [Math.min(...ring.map((p) => p[0])), Math.min(...ring.map((p) => p[1]))];
  const hi = [Math.max(...ring.map((p) => p[0])), Math.max(...ring.map((p) => p[1]))];
  const m = [0.1 * (hi[0] - lo[0]), 0.1 * (hi[1] - lo[1])];
  const gx0 = Math.max(0, Math.ceil((lo[0] - m[0]) / step)); const gx1 = Math.min(n - 1, Math.floor(Math.min(size - 1, hi[0] + m[0]) / step));
  const gy0 = Math.max(0, Math.ceil((lo[1] - m[1]) / step)); const gy1 = Math.min(n - 1, Math.floor(Math.min(size - 1, hi[1] + m[1]) / step));
  const t = tri.triangles;
  for (let k = 0; k < t.length; k += 3) {
    const a = dst[t[k]]; const b = dst[t[k + 1]]; const c = dst[t[k + 2]];
    const det = (b[1] - c[1]) * (a[0] - c[0]) + (c[0] - b[0]) * (a[1] - c[1]);
    if (Math.abs(det) < 1e-12) continue;
    const x0 = Math.max(gx0, Math.ceil(Math.min(a[0], b[0], c[0]) / step));
    const x1 = Math.min(gx1, Math.floor(Math.max(a[0], b[0], c[0]) / step));
    const y0 = Math.max(gy0, Math.ceil(Math.min(a[1], b[1], c[1]) / step));
    const y1 = Math.min(gy1, Math.floor(Math.max(a[1], b[1], c[1]) / step));
    for (let gy = y0; gy <= y1; gy++) {
      for (let gx = x0; gx <= x1; gx++) {
        const node = gy * n + gx;
        if (!outside[node]) continue;
        const px = gx * step; const py = gy * step;
        const l1 = ((b[1] - c[1]) * (px - c[0]) + (c[0] - b[0]) * (py - c[1])) / det;
        const l2 = ((c[1] - a[1]) * (px - c[0]) + (a[0] - c[0]) * (py - c[1])) / det;
        const l3 = 1 - l1 - l2;
        const eps = -1e-10;
        if (l1 >= eps && l2 >= eps && l3 >= eps) {
          outside[node] = 0;
          vertices.set([t[k], t[k + 1], t[k + 2]], node * 3);
          weights.set([l1, l2, l3], node * 3);
        }
      }
    }
  }
  return {size, n, step, vertices, weights, outside};
}

/** The backward map (mapX, mapY: Float32Array size*size) moving fromPts onto the plan's
 * target shape: exact at grid nodes, bilinear in between. */
export function planField(plan, fromPts, anchors) {
  const src = fromPts.concat(anchors);
  const {n, step, size} = plan;
  const nodeX = new Float32Array(n * n); const nodeY = new Float32Array(n * n);
  for (let node = 0; node < n * n; node++) {
    const gx = (node % n) * step; const gy = Math.floor(node / n) * step;
    if (plan.outside[node]) { nodeX[node] = gx; nodeY[node] = gy; continue; }
    let x = 0; let y = 0;
    for (let k = 0; k < 3; k++) {
      const p = src[plan.vertices[node * 3 + k]]; const w = plan.weights[node * 3 + k];
      x += w * p[0]; y += w * p[1];
    }
    nodeX[node] = x; nodeY[node] = y;
  }
  const mapX = new Float32Array(size * size); const mapY = new Float32Array(size * size);
  for (let y = 0; y < size; y++) {
    const fy = Math.min(y / step, n - 1); const y0 = Math.min(Math.floor(fy), n - 1); const y1 = Math.min(y0 + 1, n - 1); const ay = fy - y0;
    for (let x = 0; x < size; x++) {
      const fx = Math.min(x / step, n - 1); const x0 = Math.min(Math.floor(fx), n - 1); const x1 = Math.min(x0 + 1, n - 1); const ax = fx - x0;
      const i00 = y0 * n + x0; const i01 = y0 * n + x1; const i10 = y1 * n + x0; const i11 = y1 * n + x1;
      mapX[y * size + x] = (nodeX[i00] * (1 - ax) + nodeX[i01] * ax) * (1 - ay) + (nodeX[i10] * (1 - ax) + nodeX[i11] * ax) * ay;
      mapY[y * size + x] = (nodeY[i00] * (1 - ax) + nodeY[i01] * ax) * (1 - ay) + (nodeY[i10] * (1 - ax) + nodeY[i11] * ax) * ay;
    }
  }
  return {mapX, mapY, size};
}

export function applyField(field, img) {
  return remap(img, field.mapX, field.mapY, field.size, field.size, 'replicate');
}

/** Mean [x, y] of the points `idx` of `shape` ([x, y] list). */
export function centreOf(shape, idx) {
  let x = 0; let y = 0;
  for (const i of idx) { x += shape[i][0]; y += shape[i][1]; }
  return [x / idx.length, y / idx.length];
}

export function landmarkPoints(lm) {
  const out = [];
  for (let i = 0; i < lm.length / 3; i++) out.push([lm[3 * i], lm[3 * i + 1]]);
  return out;
}
