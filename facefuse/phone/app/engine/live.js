// The camera path (issue #16), the page's side: the front camera, one frame at a time handed
// to the live Worker (liveworker.js: LiteRT landmark tracking and every fusion stage run
// there), the fused frame drawn onto a canvas with WebGL2 (compositor.js). Frames are
// dropped, never queued: a frame that arrives while one is in the Worker is only counted.
import {LiveCompositor} from './compositor.js';
import {BackendError} from './errors.js';

export const LIVE_CROP = 320;
const WINDOW = 600; // frame records kept for stats()

const median = (v) => { const s = [...v].sort((a, b) => a - b); return s.length ? s[Math.floor((s.length - 1) / 2)] : 0; };
const percentile = (v, q) => { const s = [...v].sort((a, b) => a - b); return s.length ? s[Math.min(s.length - 1, Math.round(q * (s.length - 1)))] : 0; };

/** The live session on this page's own thread, behind the Worker's interface: what CPU
 * throttling in a benchmark can slow down (DevTools throttles the page's thread only). */
class InPage {
  constructor(session, onmessage) { this.session = session; this.onmessage = onmessage; }
  postMessage(msg) {
    this.session.handle(msg).then((data) => { if (data) this.onmessage({data}); });
  }
}

/** The Worker (or, with `inPage`, the same session on this thread) and its request/answer
 * plumbing; one per page, its models loaded once. */
export class LiveWorker {
  constructor(url, inPage = null) {
    // A classic worker (see liveworker.js).
    this.worker = inPage ? new InPage(inPage, (e) => this.receive(e)) : new Worker(url);
    this.waiting = new Map(); // answer type -> [resolve, reject]
    this.onFrame = null;
    if (!inPage) this.worker.onmessage = (e) => this.receive(e);
  }

  receive({data}) {
    if (data.type === 'frame') { if (this.onFrame) this.onFrame(data); return; }
    if (data.type === 'error') {
      const err = new BackendError(`live view: ${data.message}`);
      for (const [, [, reject]] of this.waiting) reject(err);
      this.waiting.clear();
      if (this.onFrame) this.onFrame({type: 'frame', error: err});
      return;
    }
    const pending = this.waiting.get(data.type);
    if (pending) { this.waiting.delete(data.type); pending[0](data); }
  }

  /** Post `msg` and wait for the answer of type `answer`. */
  ask(msg, answer, transfer = []) {
    return new Promise((resolve, reject) => {
      this.waiting.set(answer, [resolve, reject]);
      this.worker.postMessage(msg, transfer);
    });
  }

  post(msg, transfer = []) { this.worker.postMessage(msg, transfer); }
}

/** A running live view: each of `workers` has been started with the source and parameters.
 * Each takes one frame at a time; with several, consecutive frames go to different ones and
 * each starts from the newest ROI any of them found. */
export class LiveView {
  constructor(workers, stream, canvas) {
    this.workers = workers; this.stream = stream; this.canvas = canvas;
    try {
      this.compositor = new LiveCompositor(canvas);
    } catch (err) {
      for (const track of stream.getTracks()) track.stop(); // no WebGL2: the camera goes off again
      throw err;
    }
    this.shown = null; // the answer drawn last (lastPixels() draws it again to read it)
    this.frames = []; this.dropped = 0; this.tracked = 0;
    this.free = [...workers]; this.pending = new Set(); this.running = true; this.last = null;
    this.seq = 0; this.shownSeq = -1; this.roi = undefined; this.roiSeq = -1;
    this.video = document.createElement('video');
    this.video.muted = true; this.video.playsInline = true; this.video.srcObject = stream;
    this.onEnded = null; // called once if the camera stops while the view runs
    for (const track of stream.getVideoTracks()) track.addEventListener('ended', () => this.ended());
  }

  /** The camera stopped on its own (another app took it, its permission was withdrawn, the
   * page went to the background where the system ends capture): no frame will come, so the
   * view must not sit there looking live. */
  ended() {
    if (!this.running || this.endedOnce) return;
    this.endedOnce = true;
    if (this.onEnded) this.onEnded();
  }

  async start() {
    await this.video.play();
    this.canvas.width = this.video.videoWidth; this.canvas.height = this.video.videoHeight;
    if (typeof MediaStreamTrackProcessor !== 'undefined') this.pump(); else this.schedule();
  }

  /** The camera's own frames (MediaStreamTrackProcessor: CPU memory, I420, ~1-3 ms to RGBA,
   * where a frame taken from the <video> is a GPU texture read back in 30-150 ms on
   * software WebGL): each one goes to a free Worker; while none is free the newest waits
   * (one frame, never a queue: the one it replaces is dropped) and goes to the first Worker
   * that frees up, which otherwise would sit idle until the camera's next frame. */
  async pump() {
    const [track] = this.stream.getVideoTracks();
    this.reader = new MediaStreamTrackProcessor({track}).readable.getReader();
    while (this.running) {
      let got;
      try { got = await this.reader.read(); } catch { break; }
      if (got.done) break;
      // Frames the processor dropped itself (this thread was busy) show as gaps in time.
      const stamp = got.value.timestamp; const fps = track.getSettings().frameRate || 30;
      if (this.stamp !== undefined) this.dropped += Math.max(0, Math.round(((stamp - this.stamp) * fps) / 1e6) - 1);
      this.stamp = stamp;
      if (!this.running) { got.value.close(); break; }
      const arrived = performance.now();
      if (!this.free.length) {
        if (this.held) { this.held.frame.close(); this.dropped++; }
        this.held = {frame: got.value, arrived};
        continue;
      }
      this.send(got.value, arrived);
    }
    this.ended(); // the stream closed under a running view (stop() sets running first)
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
    // Camera frames never handed to us (the page's thread was busy) count as dropped too.
    if (meta && this.presented !== undefined) this.dropped += Math.max(0, meta.presentedFrames - this.presented - 1);
    if (meta) this.presented = meta.presentedFrames;
    if (!this.free.length) this.dropped++; else this.send(null);
    this.schedule();
  }

  /** Fuse one frame (a camera VideoFrame, or null: take one from the <video>) on a free
   * Worker. */
  async send(camera, arrived = performance.now()) {
    const worker = this.free.shift();
    const seq = this.seq++;
    const t0 = arrived; // the frame's time is counted from its arrival, waiting included
    let done;
    const flight = new Promise((resolve) => { done = resolve; });
    this.pending.add(flight);
    try {
      // A VideoFrame goes to the Worker (its pixels are copied out there without a canvas
      // read-back); they come back with the answer, and are drawn with the fusion.
      const useFrame = camera !== null || typeof VideoFrame !== 'undefined';
      const frame = camera ?? (useFrame ? new VideoFrame(this.video) : await createImageBitmap(this.video));
      const answer = await new Promise((resolve) => {
        worker.onFrame = resolve;
        worker.post({type: 'frame', frame, roi: this.roi}, [frame]);
      });
      worker.onFrame = null;
      if (answer.error) throw answer.error;
      if (seq > this.roiSeq) { this.roi = answer.roi; this.roiSeq = seq; }
      if (this.running && seq > this.shownSeq) {
        this.shownSeq = seq;
        const t1 = performance.now();
        this.compositor.draw(answer);
        const drawn = performance.now() - t1;
        this.shown = answer;
        this.last = {box: answer.box, w: this.canvas.width, h: this.canvas.height};
        if (answer.box) this.tracked++;
        this.frames.push({end: performance.now(), ms: performance.now() - t0, stages: {...answer.stages, draw: drawn}});
        if (this.frames.length > WINDOW) this.frames.shift();
      } else if (this.running) {
        this.dropped++; // overtaken by a newer frame from another Worker
      }
    } catch (err) {
      this.error = err;
      console.warn(err);
    } finally {
      this.free.push(worker);
      if (this.held && this.running) { const {frame, arrived: at} = this.held; this.held = null; this.send(frame, at); }
      this.pending.delete(flight);
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
      in_worker: this.kind !== 'page',
      workers: this.kind === 'page' ? 0 : this.workers.length,
      frames_dropped: this.dropped,
      width: this.canvas.width, height: this.canvas.height,
    };
    this.frames = []; this.tracked = 0; this.dropped = 0;
    return result;
  }

  /** The last frame shown, before and after fusion: {input, output (RGB arrays), w, h, box
   * and landmarks of the tracked face}, or null before the first. */
  lastPixels() {
    const answer = this.shown;
    if (!answer) return null;
    const {data, w, h} = answer.frame;
    const input = new Uint8ClampedArray(w * h * 3);
    for (let i = 0, j = 0; i < input.length; i += 3, j += 4) { input[i] = data[j]; input[i + 1] = data[j + 1]; input[i + 2] = data[j + 2]; }
    return {input, output: this.compositor.pixels(answer), w, h, box: answer.box ?? null, landmarks: answer.landmarks ?? null};
  }

  /** Stop and release the camera; resolves once the frame in flight (if any) is back. */
  stop() {
    this.running = false;
    if (this.held) { this.held.frame.close(); this.held = null; }
    if (this.reader) this.reader.cancel().catch(() => {});
    for (const track of this.stream.getTracks()) track.stop();
    this.video.srcObject = null;
    return Promise.all([...this.pending]).then(() => this.compositor.release());
  }
}
