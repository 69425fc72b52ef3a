// One camera frame through the live path (runners/live.py): track the face from the last
// frame (facemodels.js FaceTracker), fuse the prepared source into it on the 320 crop
// (livefuse.js, the album stages restructured for a stream), and hand back the frame's
// pixels with what the page's compositor (compositor.js) draws over them. It runs in the
// live Worker (liveworker.js), off the page's main thread.
import {FaceTracker, loadFaceModels} from './facemodels.js';
import {fuseFace, Timings} from './fuseface.js';
import {LiveFusion} from './livefuse.js';
import {lazyTrustModel} from './occlusion.js';
import {loadRefiner} from './refine.js';

export class LiveFuser {
  /** `engine`: {contract, models, refiner}; `source`: the prepared source {face, aligned}. */
  constructor(engine, source, params) {
    this.engine = engine; this.source = source; this.params = params;
    this.tracker = new FaceTracker(engine.models, params.det_threshold);
    // Everything of the source kept from here on; the crop's buffers reused frame to frame.
    this.fusion = new LiveFusion(engine.contract, source, source.aligned.size);
  }

  /** Fuse into `rgba` (Uint8ClampedArray, w x h x 4): {box, landmarks (null without a
   * face), stages, and what the compositor draws over the frame: `warp` (livefuse.js
   * fieldAndChange) or `patch` (finished pixels {x0, y0, w, h, data RGBA}), or neither}. */
  async frame(rgba, w, h, roi) {
    const timings = new Timings();
    // `roi`: the newest ROI the page knows (another Worker's frame may be newer than this
    // one's last); undefined keeps this tracker's own.
    if (roi !== undefined) this.tracker.roi = roi;
    const face = await timings.stage('analyse', () => this.tracker.track({w, h, c: 4, data: rgba}));
    if (!face) return {box: null, landmarks: null, stages: timings.ms};
    const p = this.params;
    if (p.feature_registration) {
      // The stage the live path has no restructured form of: the album's, on an RGB copy.
      if (!this.rgb || this.rgb.data.length !== w * h * 3) this.rgb = {w, h, c: 3, data: new Uint8ClampedArray(w * h * 3)};
      const rgb = this.rgb.data;
      for (let i = 0, j = 0; i < rgb.length; i += 3, j += 4) { rgb[i] = rgba[j]; rgb[i + 1] = rgba[j + 1]; rgb[i + 2] = rgba[j + 2]; }
      const out = await fuseFace(this.engine, this.source, this.rgb, face, p, timings);
      return {box: face.box, landmarks: face.landmarks, stages: timings.ms, patch: out.changed ? patchOf(out, out.changed) : null};
    }
    const warp = await this.fusion.fuse(this.engine, rgba, w, h, face, p, timings);
    return {box: face.box, landmarks: face.landmarks, stages: timings.ms, warp};
  }
}

/** The box `b` of an RGB image as RGBA pixels {x0, y0, w, h, data}. */
function patchOf(img, b) {
  const pw = b.x1 - b.x0; const ph = b.y1 - b.y0;
  const data = new Uint8ClampedArray(pw * ph * 4);
  for (let y = 0; y < ph; y++) {
    let i = ((b.y0 + y) * img.w + b.x0) * 3; let j = y * pw * 4;
    for (let x = 0; x < pw; x++, i += 3, j += 4) {
      data[j] = img.data[i]; data[j + 1] = img.data[i + 1]; data[j + 2] = img.data[i + 2]; data[j + 3] = 255;
    }
  }
  return {x0: b.x0, y0: b.y0, w: pw, h: ph, data};
}

/** A camera frame's RGBA pixels: a VideoFrame copied out directly, or an ImageBitmap drawn
 * and read back through `canvas`. The frame is closed. */
async function pixelsOf(frame, canvas) {
  if (typeof VideoFrame !== 'undefined' && frame instanceof VideoFrame) {
    const w = frame.displayWidth; const h = frame.displayHeight;
    const data = new Uint8ClampedArray(w * h * 4);
    try {
      await frame.copyTo(data, {format: 'RGBA', rect: {x: 0, y: 0, width: w, height: h}});
    } finally {
      frame.close();
    }
    return {data, w, h};
  }
  const w = frame.width; const h = frame.height;
  if (!canvas.value || canvas.value.width !== w || canvas.value.height !== h) canvas.value = new OffscreenCanvas(w, h);
  const ctx = canvas.value.getContext('2d', {willReadFrequently: true});
  ctx.drawImage(frame, 0, 0);
  frame.close();
  return {data: ctx.getImageData(0, 0, w, h).data, w, h};
}

/** The live view's state behind its message protocol, run in the Worker (liveworker.js) or,
 * with {worker: false}, on the page itself. Messages: {type: 'init', base, contract,
 * faceModels, refinerUrl, refine} (load the models, once) -> 'ready'; {type: 'start', source,
 * params} -> 'started'; {type: 'params', params}; {type: 'frame', frame (a VideoFrame or
 * ImageBitmap, closed here), roi} -> {type: 'frame', frame {data RGBA, w, h}, box,
 * landmarks, stages, warp or patch, roi (the next frame's)}, its arrays in `transfer`.
 * A failure answers {type: 'error', message}. */
export class LiveSession {
  constructor() { this.engine = null; this.fuser = null; this.canvas = {value: null}; }

  async handle(msg) {
    try {
      if (msg.type === 'init') { await this.init(msg); return {type: 'ready'}; }
      if (msg.type === 'start') {
        this.fuser = new LiveFuser(this.engine, msg.source, msg.params);
        return {type: 'started'};
      }
      if (msg.type === 'params') { if (this.fuser) this.fuser.params = msg.params; return null; }
      if (msg.type === 'frame') return await this.frame(msg.frame, msg.roi);
      return null;
    } catch (err) {
      if (msg.frame) msg.frame.close();
      return {type: 'error', message: err.message || String(err)};
    }
  }

  async init(msg) {
    if (!this.engine) {
      const [refiner, models] = await Promise.all([
        msg.refine ? loadRefiner(msg.base, msg.contract, msg.refinerUrl) : null,
        loadFaceModels(msg.base, msg.faceModels),
      ]);
      this.engine = {contract: msg.contract, models, refiner,
        trustModel: lazyTrustModel(msg.base, msg.contract, msg.trustUrl)};
    } else if (msg.refine && !this.engine.refiner) {
      this.engine.refiner = await loadRefiner(msg.base, msg.contract, msg.refinerUrl);
    }
  }

  async frame(frame, roi) {
    const t0 = performance.now();
    const {data, w, h} = await pixelsOf(frame, this.canvas);
    const t1 = performance.now();
    const {box, landmarks, stages, warp, patch} = await this.fuser.frame(data, w, h, roi);
    // 'pixels': the camera frame into a plain array (handed on to the page, which draws it
    // and the fusion over it).
    stages.pixels = t1 - t0;
    const transfer = [data.buffer];
    if (warp) transfer.push(warp.shifts.buffer, warp.change.data.buffer);
    if (patch) transfer.push(patch.data.buffer);
    return {type: 'frame', frame: {data, w, h}, box, landmarks, stages, warp, patch,
      roi: this.fuser.tracker.roi, transfer};
  }
}
