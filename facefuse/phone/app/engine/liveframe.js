// One camera frame through the live path (runners/live.py): track the face from the last
// frame (facemodels.js FaceTracker), fuse the prepared source into it on the 320 crop, and
// write the result back into the frame's RGBA pixels. It runs in the live Worker
// (liveworker.js), off the page's main thread.
import {FaceTracker, loadFaceModels} from './facemodels.js';
import {fuseFace, Timings} from './fuseface.js';
import {loadRefiner} from './refine.js';

export class LiveFuser {
  /** `engine`: {contract, models, refiner}; `source`: the prepared source {face, aligned}. */
  constructor(engine, source, params) {
    this.engine = engine; this.source = source; this.params = params;
    this.tracker = new FaceTracker(engine.models, params.det_threshold);
    this.rgb = null;
  }

  /** Fuse into `rgba` (Uint8ClampedArray, w x h x 4) in place: {box (or null), stages}. */
  async frame(rgba, w, h) {
    const timings = new Timings();
    const face = await timings.stage('analyse', () => this.tracker.track({w, h, c: 4, data: rgba}));
    if (!face) return {box: null, landmarks: null, stages: timings.ms};
    if (!this.rgb || this.rgb.data.length !== w * h * 3) this.rgb = {w, h, c: 3, data: new Uint8ClampedArray(w * h * 3)};
    const rgb = this.rgb.data;
    for (let i = 0, j = 0; i < rgb.length; i += 3, j += 4) { rgb[i] = rgba[j]; rgb[i + 1] = rgba[j + 1]; rgb[i + 2] = rgba[j + 2]; }
    const out = await fuseFace(this.engine, this.source, this.rgb, face, this.params, timings);
    const o = out.data;
    for (let i = 0, j = 0; i < o.length; i += 3, j += 4) { rgba[j] = o[i]; rgba[j + 1] = o[i + 1]; rgba[j + 2] = o[i + 2]; }
    return {box: face.box, landmarks: face.landmarks, stages: timings.ms};
  }
}

/** The live view's state behind its message protocol, run in the Worker (liveworker.js) or,
 * with {worker: false}, on the page itself. Messages: {type: 'init', base, contract,
 * faceModels, refinerUrl, refine} (load the models, once) -> 'ready'; {type: 'start', source,
 * params} -> 'started'; {type: 'params', params}; {type: 'frame', bitmap} -> {type: 'frame',
 * bitmap, box, stages}; {type: 'last'} -> the last frame's pixels before and after (RGB).
 * A failure answers {type: 'error', message}. */
export class LiveSession {
  constructor() { this.engine = null; this.fuser = null; this.canvas = null; this.last = null; }

  async handle(msg) {
    try {
      if (msg.type === 'init') { await this.init(msg); return {type: 'ready'}; }
      if (msg.type === 'start') {
        this.fuser = new LiveFuser(this.engine, msg.source, msg.params);
        this.last = null;
        return {type: 'started'};
      }
      if (msg.type === 'params') { if (this.fuser) this.fuser.params = msg.params; return null; }
      if (msg.type === 'frame') return await this.frame(msg.bitmap);
      if (msg.type === 'last') return {type: 'last', last: this.lastPixels()};
      return null;
    } catch (err) {
      if (msg.bitmap) msg.bitmap.close();
      return {type: 'error', message: err.message || String(err)};
    }
  }

  async init(msg) {
    if (!this.engine) {
      const [refiner, models] = await Promise.all([
        msg.refine ? loadRefiner(msg.base, msg.contract, msg.refinerUrl) : null,
        loadFaceModels(msg.base, msg.faceModels),
      ]);
      this.engine = {contract: msg.contract, models, refiner};
    } else if (msg.refine && !this.engine.refiner) {
      this.engine.refiner = await loadRefiner(msg.base, msg.contract, msg.refinerUrl);
    }
  }

  async frame(bitmap) {
    const {width: w, height: h} = bitmap;
    if (!this.canvas || this.canvas.width !== w || this.canvas.height !== h) this.canvas = new OffscreenCanvas(w, h);
    const ctx = this.canvas.getContext('2d', {willReadFrequently: true});
    ctx.drawImage(bitmap, 0, 0);
    bitmap.close();
    const image = ctx.getImageData(0, 0, w, h);
    const input = image.data.slice();
    const {box, landmarks, stages} = await this.fuser.frame(image.data, w, h);
    this.last = {input, output: image.data, w, h, box, landmarks};
    ctx.putImageData(image, 0, 0);
    return {type: 'frame', bitmap: this.canvas.transferToImageBitmap(), box, stages};
  }

  lastPixels() {
    if (!this.last) return null;
    const rgb = (rgba) => {
      const out = new Uint8ClampedArray((rgba.length / 4) * 3);
      for (let i = 0, j = 0; i < out.length; i += 3, j += 4) { out[i] = rgba[j]; out[i + 1] = rgba[j + 1]; out[i + 2] = rgba[j + 2]; }
      return out;
    };
    const {input, output, w, h, box, landmarks} = this.last;
    return {input: rgb(input), output: rgb(output), w, h, box: box ?? null, landmarks: landmarks ?? null};
  }
}
