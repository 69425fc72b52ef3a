// One camera frame through the live path (runners/live.py): track the face from the last
// frame (facemodels.js FaceTracker), fuse the prepared source into it on the 320 crop, and
// write the result back into the frame's RGBA pixels. Plain arrays only: it runs in the
// live Worker (liveworker.js), off the page's main thread.
import {FaceTracker} from './facemodels.js';
import {fuseFace, Timings} from './fuseface.js';

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
    if (!face) return {box: null, stages: timings.ms};
    if (!this.rgb || this.rgb.data.length !== w * h * 3) this.rgb = {w, h, c: 3, data: new Uint8ClampedArray(w * h * 3)};
    const rgb = this.rgb.data;
    for (let i = 0, j = 0; i < rgb.length; i += 3, j += 4) { rgb[i] = rgba[j]; rgb[i + 1] = rgba[j + 1]; rgb[i + 2] = rgba[j + 2]; }
    const out = await fuseFace(this.engine, this.source, this.rgb, face, this.params, timings);
    const o = out.data;
    for (let i = 0, j = 0; i < o.length; i += 3, j += 4) { rgba[j] = o[i]; rgba[j + 1] = o[i + 1]; rgba[j + 2] = o[i + 2]; }
    return {box: face.box, stages: timings.ms};
  }
}
