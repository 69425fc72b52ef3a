// Landmarks: MediaPipe Face Mesh (the legacy solution 0.4.1633559619, its models packed in
// the npm package) in the browser, 478 points with refined irises, the same model family
// and static-image mode the Python side runs. Faces are found on the whole photo, then the
// mesh runs again on a 384 px crop around each face, as stages/analysis.py does.
import {BackendError} from './errors.js';
import {makeImage, warpAffineInverse} from './raster.js';

function loadScript(url) {
  return new Promise((resolve, reject) => {
    const s = document.createElement('script');
    s.src = url; s.onload = resolve; s.onerror = () => reject(new Error(`cannot load ${url}`));
    document.head.appendChild(s);
  });
}

/** One Face Mesh graph with fixed options. Changing a graph's options rebuilds it (seconds
 * on software WebGL), so the engine keeps one graph per role instead of re-configuring. */
async function meshGraph(dir, options) {
  const mesh = new globalThis.FaceMesh({locateFile: (file) => dir + file});
  mesh.setOptions(options);
  let pending = null;
  mesh.onResults((r) => { if (pending) { const p = pending; pending = null; p(r); } });
  await mesh.initialize();
  return {
    mesh,
    async run(canvas) {
      const got = new Promise((resolve) => { pending = resolve; });
      await mesh.send({image: canvas});
      return got;
    },
    close() { return mesh.close(); },
  };
}

const MESH_OPTIONS = {staticImageMode: true, refineLandmarks: true, minTrackingConfidence: 0.5,
  selfieMode: false};
const MAX_FACES = 8;

/** The landmark runtime: a graph that finds every face of a photo (its detector threshold
 * is the user's det_threshold, so a graph is kept per threshold used) and one that meshes a
 * crop around one face, as the Python side's static Face Mesh does. */
export async function loadMesh(base) {
  const dir = new URL('vendor/face_mesh/', base).href;
  try {
    if (!globalThis.FaceMesh) await loadScript(dir + 'face_mesh.js');
    const crop = await meshGraph(dir, {...MESH_OPTIONS, maxNumFaces: 1, minDetectionConfidence: 0.3});
    const finders = new Map();
    return {
      crop,
      async finder(threshold) {
        if (!finders.has(threshold)) {
          finders.set(threshold, meshGraph(dir, {...MESH_OPTIONS, maxNumFaces: MAX_FACES,
            minDetectionConfidence: threshold}));
        }
        return finders.get(threshold);
      },
    };
  } catch (err) {
    throw new BackendError(`could not load Face Mesh: ${err.message || err}`);
  }
}

export function toCanvas(img) {
  const canvas = document.createElement('canvas');
  canvas.width = img.w; canvas.height = img.h;
  const rgba = new ImageData(img.w, img.h);
  for (let i = 0; i < img.w * img.h; i++) {
    rgba.data[4 * i] = img.data[3 * i]; rgba.data[4 * i + 1] = img.data[3 * i + 1];
    rgba.data[4 * i + 2] = img.data[3 * i + 2]; rgba.data[4 * i + 3] = 255;
  }
  canvas.getContext('2d').putImageData(rgba, 0, 0);
  return canvas;
}

function toArray(points, w, h) {
  const lm = new Float64Array(points.length * 3);
  points.forEach((p, i) => { lm[3 * i] = p.x * w; lm[3 * i + 1] = p.y * h; lm[3 * i + 2] = p.z * w; });
  return lm;
}

/** A square box like the detector's around a mesh (measured against BlazeFace full-range
 * on the London set: side ~0.97 x the mesh's larger extent, centre ~2% of it lower). */
function boxOfMesh(lm) {
  let x0 = Infinity; let y0 = Infinity; let x1 = -Infinity; let y1 = -Infinity;
  for (let i = 0; i < lm.length / 3; i++) {
    x0 = Math.min(x0, lm[3 * i]); x1 = Math.max(x1, lm[3 * i]);
    y0 = Math.min(y0, lm[3 * i + 1]); y1 = Math.max(y1, lm[3 * i + 1]);
  }
  const side = 0.97 * Math.max(x1 - x0, y1 - y0);
  const cx = (x0 + x1) / 2; const cy = (y0 + y1) / 2 + 0.02 * (y1 - y0);
  return [cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2];
}

/** Face Mesh on a square crop around `box` (stages/analysis.py _mesh_in_box). */
async function meshInBox(runner, rgb, box, contract) {
  const S = contract.constants.mesh_crop_side;
  const [x0, y0, x1, y1] = box;
  const cx = (x0 + x1) / 2; const cy = (y0 + y1) / 2;
  const side = 2 * Math.max(x1 - x0, y1 - y0); const s = S / side;
  const ox = cx - side / 2; const oy = cy - side / 2;
  const crop = warpAffineInverse(rgb, [[1 / s, 0, ox], [0, 1 / s, oy]], S, S, 'replicate');
  const result = await runner.crop.run(toCanvas(crop));
  const faces = result.multiFaceLandmarks || [];
  if (!faces.length) return null;
  const lm = toArray(faces[0], S, S);
  let mx = 0; let my = 0; const n = lm.length / 3;
  for (let i = 0; i < n; i++) {
    lm[3 * i] = lm[3 * i] / s + ox; lm[3 * i + 1] = lm[3 * i + 1] / s + oy; lm[3 * i + 2] /= s;
    mx += lm[3 * i] / n; my += lm[3 * i + 1] / n;
  }
  const bw = x1 - x0; const bh = y1 - y0;
  if (!(x0 - 0.25 * bw <= mx && mx <= x1 + 0.25 * bw && y0 - 0.25 * bh <= my && my <= y1 + 0.25 * bh)) return null;
  return lm;
}

const DETECT_SIDE = 960; // Face Mesh's detector looks at 128 px: more only costs time
/** Faces of `rgb` ({w, h, data} uint8 RGB), largest first: {box, landmarks, score}. */
export async function detectFaces(runner, rgb, detThreshold, contract) {
  const f = Math.min(1, DETECT_SIDE / Math.max(rgb.w, rgb.h));
  let small = rgb;
  if (f < 1) {
    small = warpAffineInverse(rgb, [[1 / f, 0, 0.5 / f - 0.5], [0, 1 / f, 0.5 / f - 0.5]],
        Math.round(rgb.w * f), Math.round(rgb.h * f), 'replicate');
  }
  const found = await (await runner.finder(detThreshold)).run(toCanvas(small));
  const faces = [];
  for (const pts of found.multiFaceLandmarks || []) {
    const coarse = toArray(pts, small.w, small.h);
    for (let i = 0; i < coarse.length; i++) coarse[i] /= f;
    const box = boxOfMesh(coarse);
    const landmarks = await meshInBox(runner, rgb, box, contract);
    if (landmarks) faces.push({box, score: detThreshold, landmarks});
  }
  faces.sort((a, b) => (b.box[2] - b.box[0]) * (b.box[3] - b.box[1]) - (a.box[2] - a.box[0]) * (a.box[3] - a.box[1]));
  return faces;
}

export function mouthOpenRatio(lm, L) {
  const d = (a, b) => Math.hypot(lm[3 * a] - lm[3 * b], lm[3 * a + 1] - lm[3 * b + 1]);
  return d(L.lower_lip_inner, L.upper_lip_inner) / Math.max(d(L.mouth_left, L.mouth_right), 1e-6);
}

export {makeImage};
