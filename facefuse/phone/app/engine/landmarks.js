// Landmarks for photos: MediaPipe's face detector and face landmark + iris models on LiteRT.js
// (facemodels.js), 478 points in Face Mesh's order, found the way stages/analysis.py finds
// them: faces on the whole photo (and on tiles when asked), then the mesh on a 384 px crop
// around each face.
import {detect, landmarksIn, roiFromDetection} from './facemodels.js';
import {cropBox, makeImage, warpAffineInverse} from './raster.js';

// The Python side's static Face Mesh looks for the face in its crop with this floor.
const CROP_DETECT_THRESHOLD = 0.3;

/** A square box like the detector's around a mesh (measured against BlazeFace full-range
 * on the London set and the astronaut: side ~0.97 x the mesh's larger extent). */
function boxOfMesh(lm) {
  let x0 = Infinity; let y0 = Infinity; let x1 = -Infinity; let y1 = -Infinity;
  for (let i = 0; i < lm.length / 3; i++) {
    x0 = Math.min(x0, lm[3 * i]); x1 = Math.max(x1, lm[3 * i]);
    y0 = Math.min(y0, lm[3 * i + 1]); y1 = Math.max(y1, lm[3 * i + 1]);
  }
  const side = 0.97 * Math.max(x1 - x0, y1 - y0);
  const cx = (x0 + x1) / 2; const cy = (y0 + y1) / 2;
  return [cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2];
}

/** The landmarks of the face in a square crop (crop pixels), or null: the detector finds it,
 * the landmark model meshes it (static Face Mesh: one pass from the detection). */
async function meshOfCrop(models, crop) {
  const dets = await detect(models, crop, CROP_DETECT_THRESHOLD);
  if (!dets.length) return null;
  const found = await landmarksIn(models, crop, roiFromDetection(dets[0]));
  return found ? found.landmarks : null;
}

/** Landmarks on a square crop around `box` (stages/analysis.py _mesh_in_box). */
async function meshInBox(models, rgb, box, contract) {
  const S = contract.constants.mesh_crop_side;
  const [x0, y0, x1, y1] = box;
  const cx = (x0 + x1) / 2; const cy = (y0 + y1) / 2;
  const side = 2 * Math.max(x1 - x0, y1 - y0); const s = S / side;
  const ox = cx - side / 2; const oy = cy - side / 2;
  const crop = warpAffineInverse(rgb, [[1 / s, 0, ox], [0, 1 / s, oy]], S, S, 'replicate');
  const lm = await meshOfCrop(models, crop);
  if (!lm) return null;
  let mx = 0; let my = 0; const n = lm.length / 3;
  for (let i = 0; i < n; i++) {
    lm[3 * i] = lm[3 * i] / s + ox; lm[3 * i + 1] = lm[3 * i + 1] / s + oy; lm[3 * i + 2] /= s;
    mx += lm[3 * i] / n; my += lm[3 * i + 1] / n;
  }
  const bw = x1 - x0; const bh = y1 - y0;
  if (!(x0 - 0.25 * bw <= mx && mx <= x1 + 0.25 * bw && y0 - 0.25 * bh <= my && my <= y1 + 0.25 * bh)) return null;
  return lm;
}

// The whole-photo pass only finds the faces (the detector looks at 128 px); a larger input
// only costs time. The landmarks come from the second pass on a 384 px crop around each
// face, as on the Python side.
const DETECT_SIDE = 480;
/** The faces found in `rgb` ({box, score}; looked at no larger than DETECT_SIDE): a coarse mesh
 * per detection gives each box (boxOfMesh: the size the Python side's full-range detector
 * gives, so the landmark crop is framed alike). */
async function findBoxes(models, rgb, detThreshold, offset = [0, 0]) {
  const f = Math.min(1, DETECT_SIDE / Math.max(rgb.w, rgb.h));
  let small = rgb;
  if (f < 1) {
    small = warpAffineInverse(rgb, [[1 / f, 0, 0.5 / f - 0.5], [0, 1 / f, 0.5 / f - 0.5]],
        Math.round(rgb.w * f), Math.round(rgb.h * f), 'replicate');
  }
  const boxes = [];
  for (const d of await detect(models, small, detThreshold)) {
    const found = await landmarksIn(models, small, roiFromDetection(d));
    if (!found) continue;
    const coarse = found.landmarks;
    for (let i = 0; i < coarse.length; i++) coarse[i] /= f;
    const [x0, y0, x1, y1] = boxOfMesh(coarse);
    boxes.push({box: [x0 + offset[0], y0 + offset[1], x1 + offset[0], y1 + offset[1]], score: d.score});
  }
  return boxes;
}

function tileStarts(length, tile, stride) {
  if (length <= tile) return [0];
  const starts = [];
  for (let s = 0; s < length - tile; s += stride) starts.push(s);
  return [...starts, length - tile];
}

/** Boxes in overlapping tiles, halving the tile down to min_tile (analysis._detect_tiles). */
async function tileBoxes(models, rgb, detThreshold, contract) {
  const {min_tile: minTile, tile_overlap: overlap} = contract.constants;
  const found = [];
  for (let tile = Math.max(rgb.w, rgb.h) / 2; tile >= minTile; tile /= 2) {
    const t = Math.floor(tile); const stride = Math.max(1, Math.floor(t * (1 - overlap)));
    for (const y of tileStarts(rgb.h, t, stride)) {
      for (const x of tileStarts(rgb.w, t, stride)) {
        const part = cropBox(rgb, {x0: x, y0: y, x1: Math.min(rgb.w, x + t), y1: Math.min(rgb.h, y + t)});
        found.push(...await findBoxes(models, part, detThreshold, [x, y]));
      }
    }
  }
  return found;
}

/** One box per face: a box overlapping a kept one, or mostly inside it, is the same face
 * (analysis._merge_boxes; the whole-photo boxes come first and win). */
function mergeBoxes(found) {
  const kept = [];
  for (const entry of found) {
    const {box} = entry;
    const area = (box[2] - box[0]) * (box[3] - box[1]);
    const same = kept.some(({box: o}) => {
      const ix = Math.max(0, Math.min(box[2], o[2]) - Math.max(box[0], o[0]));
      const iy = Math.max(0, Math.min(box[3], o[3]) - Math.max(box[1], o[1]));
      const union = area + (o[2] - o[0]) * (o[3] - o[1]) - ix * iy;
      return ix * iy / Math.max(union, 1e-9) > 0.3 || ix * iy > 0.6 * area;
    });
    if (!same) kept.push(entry);
  }
  return kept;
}

/** Faces of `rgb` ({w, h, data} uint8 RGB), largest first: {box, landmarks, score}.
 * `thorough` (every face wanted: the face picker, a face other than the first) also looks
 * at overlapping tiles, as it does when the whole photo shows no face, so small faces in
 * group photos are found. */
export async function detectFaces(models, rgb, detThreshold, contract, thorough = false) {
  let boxes = await findBoxes(models, rgb, detThreshold);
  if (thorough || !boxes.length) boxes = mergeBoxes(boxes.concat(await tileBoxes(models, rgb, detThreshold, contract)));
  const faces = [];
  for (const {box, score} of boxes) {
    const landmarks = await meshInBox(models, rgb, box, contract);
    if (landmarks) faces.push({box, score, landmarks});
  }
  faces.sort((a, b) => (b.box[2] - b.box[0]) * (b.box[3] - b.box[1]) - (a.box[2] - a.box[0]) * (a.box[3] - a.box[1]));
  return faces;
}

export function mouthOpenRatio(lm, L) {
  const d = (a, b) => Math.hypot(lm[3 * a] - lm[3 * b], lm[3 * a + 1] - lm[3 * b + 1]);
  return d(L.lower_lip_inner, L.upper_lip_inner) / Math.max(d(L.mouth_left, L.mouth_right), 1e-6);
}

export {makeImage};
