// One camera frame through the live path (runners/live.py): track the face from the last
// frame (facemodels.js FaceTracker), fuse the prepared source into it on the 320 crop
// (livefuse.js, the album stages restructured for a stream), and hand back the changed
// pixels as RGBA. It runs in the live Worker
// (liveworker.js), off the page's main thread.
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
   * face), stages, patch: the changed pixels {x0, y0, w, h, data RGBA} or null}. */
  async frame(rgba, w, h, roi) {
    const timings = new Timings();
    // `roi`: the newest ROI the page knows (another Worker's frame may be newer than this
    // one's last); undefined keeps this tracker's own.
    if (roi !== undefined) this.tracker.roi = roi;
    const face = await timings.stage('analyse', () => this.tracker.track({w, h, c: 4, data: rgba}));
    if (!face) return {box: null, landmarks: null, stages: timings.ms, patch: null};
    const p = this.params;
    if (p.occlusion || p.feature_registration) {
      // Stages the live path has no restructured form of: the album's, on an RGB copy.
      if (!this.rgb || this.rgb.data.length !== w * h * 3) this.rgb = {w, h, c: 3, data: new Uint8ClampedArray(w * h * 3)};
      const rgb = this.rgb.data;
      for (let i = 0, j = 0; i < rgb.length; i += 3, j += 4) { rgb[i] = rgba[j]; rgb[i + 1] = rgba[j + 1]; rgb[i + 2] = rgba[j + 2]; }
      const out = await fuseFace(this.engine, this.source, this.rgb, face, p, timings);
      return {box: face.box, landmarks: face.landmarks, stages: timings.ms, patch: out.changed ? patchOf(out, out.changed) : null};
    }
    const patch = await this.fusion.fuse(this.engine, rgba, w, h, face, p, timings);
    return {box: face.box, landmarks: face.landmarks, stages: timings.ms, patch};
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
 * ImageBitmap, closed here), roi} -> {type: 'frame', box, stages, patch, roi (the next
 * frame's)}; {type: 'last'} -> the last frame's pixels before and after (RGB).
 * A failure answers {type: 'error', message}. */
export class LiveSession {
  constructor() { this.engine = null; this.fuser = null; this.canvas = {value: null}; this.last = null; }

  async handle(msg) {
    try {
      if (msg.type === 'init') { await this.init(msg); return {type: 'ready'}; }
      if (msg.type === 'start') {
        this.fuser = new LiveFuser(this.engine, msg.source, msg.params);
        this.last = null;
        return {type: 'started'};
      }
      if (msg.type === 'params') { if (this.fuser) this.fuser.params = msg.params; return null; }
      if (msg.type === 'frame') return await this.frame(msg.frame, msg.roi);
      if (msg.type === 'last') return {type: 'last', last: this.lastPixels()};
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
    const {box, landmarks, stages, patch} = await this.fuser.frame(data, w, h, roi);
    this.last = {input: data, patch, w, h, box, landmarks};
    // 'pixels': the camera frame into a plain array (the page draws the frame itself and
    // only the changed patch over it).
    stages.pixels = t1 - t0;
    return {type: 'frame', box, stages, patch, roi: this.fuser.tracker.roi};
  }

  lastPixels() {
    if (!this.last) return null;
    const rgb = (rgba) => {
      const out = new Uint8ClampedArray((rgba.length / 4) * 3);
      for (let i = 0, j = 0; i < out.length; i += 3, j += 4) { out[i] = rgba[j]; out[i + 1] = rgba[j + 1]; out[i + 2] = rgba[j + 2]; }
      return out;
    };
    const {input, patch, w, h, box, landmarks} = this.last;
    const output = input.slice();
    if (patch) {
      for (let y = 0; y < patch.h; y++) output.set(patch.data.subarray(y * patch.w * 4, (y + 1) * patch.w * 4), ((patch.y0 + y) * w + patch.x0) * 4);
    }
    return {input: rgb(input), output: rgb(output), w, h, box: box ?? null, landmarks: landmarks ?? null};
  }
}
