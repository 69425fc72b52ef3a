// The camera path (issue #16): the front camera, the source prepared once, Face Mesh
// tracking from frame to frame, fusion on the 320 crop with the refiner at half its side
// (runners/live.py), the fused frame drawn onto a canvas. Frames are dropped, never
// queued: a frame that arrives while one is being fused is only counted.
import {fuseFace, Timings} from './fuseface.js';
import {toCanvas, trackFace} from './landmarks.js';

export const LIVE_CROP = 320;
const WINDOW = 600; // frame records kept for stats()

const median = (v) => { const s = [...v].sort((a, b) => a - b); return s.length ? s[Math.floor((s.length - 1) / 2)] : 0; };
const percentile = (v, q) => { const s = [...v].sort((a, b) => a - b); return s.length ? s[Math.min(s.length - 1, Math.round(q * (s.length - 1)))] : 0; };

/** A running live view. `source`: the prepared source {face, aligned} at the 320 crop. */
export class LiveView {
  constructor(engine, source, params, stream, canvas) {
    this.engine = engine; this.source = source; this.params = params; this.stream = stream;
    this.canvas = canvas; this.frames = []; this.dropped = 0; this.tracked = 0;
    this.busy = false; this.running = true;
    this.video = document.createElement('video');
    this.video.muted = true; this.video.playsInline = true; this.video.srcObject = stream;
    this.work = document.createElement('canvas');
  }

  async start() {
    await this.video.play();
    const w = this.video.videoWidth; const h = this.video.videoHeight;
    this.work.width = w; this.work.height = h; this.canvas.width = w; this.canvas.height = h;
    this.schedule();
  }

  schedule() {
    if (!this.running) return;
    if (this.video.requestVideoFrameCallback) {
      this.video.requestVideoFrameCallback((now, meta) => this.onFrame(meta));
    } else {
      requestAnimationFrame(() => this.onFrame(null));
    }
  }

  onFrame(meta) {
    if (!this.running) return;
    // The camera's frames that were never handed to us (the page was busy fusing) count
    // as dropped too: the fusion runs on this thread, so callbacks are coalesced.
    if (meta && this.presented !== undefined) this.dropped += Math.max(0, meta.presentedFrames - this.presented - 1);
    if (meta) this.presented = meta.presentedFrames;
    if (this.busy) this.dropped++; else this.process();
    this.schedule();
  }

  async process() {
    this.busy = true;
    let done;
    this.inFlight = new Promise((resolve) => { done = resolve; });
    const t0 = performance.now();
    const timings = new Timings();
    try {
      const {w, h} = {w: this.work.width, h: this.work.height};
      const ctx = this.work.getContext('2d', {willReadFrequently: true});
      ctx.drawImage(this.video, 0, 0, w, h);
      const rgba = ctx.getImageData(0, 0, w, h).data;
      const rgb = {w, h, c: 3, data: new Uint8ClampedArray(w * h * 3)};
      for (let i = 0; i < w * h; i++) {
        rgb.data[3 * i] = rgba[4 * i]; rgb.data[3 * i + 1] = rgba[4 * i + 1]; rgb.data[3 * i + 2] = rgba[4 * i + 2];
      }
      const face = await timings.stage('analyse', () => trackFace(this.engine.mesh, this.work, w, h));
      let out = rgb;
      if (face) {
        this.tracked++;
        out = await fuseFace(this.engine, this.source, rgb, face, this.params, timings);
      }
      if (!this.running) return;
      this.last = {input: rgb, output: out, box: face ? face.box : null};
      const frame = new ImageData(w, h);
      for (let i = 0; i < w * h; i++) {
        frame.data[4 * i] = out.data[3 * i]; frame.data[4 * i + 1] = out.data[3 * i + 1];
        frame.data[4 * i + 2] = out.data[3 * i + 2]; frame.data[4 * i + 3] = 255;
      }
      this.canvas.getContext('2d').putImageData(frame, 0, 0);
      this.frames.push({end: performance.now(), ms: performance.now() - t0, stages: timings.ms, face: !!face});
      if (this.frames.length > WINDOW) this.frames.shift();
    } finally {
      this.busy = false;
      done();
    }
  }

  /** fps, frame ms p50/p95, per-stage ms (median), faces tracked and frames dropped since
   * the last call; the counters then start again. */
  stats() {
    const frames = this.frames; const now = performance.now();
    const recent = frames.filter((f) => now - f.end <= 1000);
    const stages = {};
    for (const f of frames) for (const [k, v] of Object.entries(f.stages)) (stages[k] ??= []).push(v);
    const span = frames.length > 1 ? (frames.at(-1).end - frames[0].end) / 1000 : 0;
    const result = {
      fps: span > 0 ? (frames.length - 1) / span : recent.length,
      frames: frames.length,
      frame_ms_p50: median(frames.map((f) => f.ms)),
      frame_ms_p95: percentile(frames.map((f) => f.ms), 0.95),
      stages_ms: Object.fromEntries(Object.entries(stages).map(([k, v]) => [k, median(v)])),
      faces_tracked: this.tracked,
      frames_dropped: this.dropped,
      width: this.canvas.width, height: this.canvas.height,
    };
    this.frames = []; this.tracked = 0; this.dropped = 0;
    return result;
  }

  /** Stop and release the camera; resolves once the frame in flight (if any) is done, so
   * the landmark graphs are free for the next caller. */
  stop() {
    this.running = false;
    for (const track of this.stream.getTracks()) track.stop();
    this.video.srcObject = null;
    return this.busy ? this.inFlight : Promise.resolve();
  }
}

export {toCanvas};
