// The facefuse engine for the browser: the JS API the phone app (and any web page) calls.
// Mirrors facefuse/pipeline.py stage by stage; everything runs on this device, nothing is
// uploaded. Parameters, index sets and constants come from ../contract.json (written by
// facefuse/phone/contract.py).
import {alignFace} from './align.js';
import {BackendError, FaceFuseError, ImageError, NoFaceError, ParameterError} from './errors.js';
import {resizeOutput} from './finish.js';
import {fuseFace, roundInPlace, Timings} from './fuseface.js';
import {checkFile, loadImage} from './image.js';
import {loadFaceModels} from './facemodels.js';
import {detectFaces as meshFaces} from './landmarks.js';
import {LIVE_CROP, LiveView, LiveWorker} from './live.js';
import {LiveSession} from './liveframe.js';
import {validateParams as validate} from './params.js';
import {resizeArea} from './raster.js';
import {lazyTrustModel} from './occlusion.js';
import {loadRefiner} from './refine.js';

export {BackendError, FaceFuseError, ImageError, NoFaceError, ParameterError};

export const STAGES = ['load', 'analyse', 'align', 'geometry', 'texture', 'refine', 'paste', 'finish'];
const APP_BASE = new URL('../', import.meta.url);
const PREVIEW_SIDE = 640; // the preview fuses downscaled copies on the 320 crop path
const PREVIEW_CROP = 320;

let engine = null; // {contract, models, refiner}; one per page, loaded once
let loading = null;
const analysed = new WeakMap(); // source object -> {rgb, faces: Map(key -> faces)}

/** The contract (parameters, presets, index sets), as the app builds its controls from. */
export let CONTRACT = null;
/** Named presets ('desktop', 'mobile') with the Python side's values. */
export let PRESETS = {};

let contractLoading = null;

/** contract.json alone (parameters, presets): what validation and the app's controls need,
 * without loading any model. */
export function loadContract() {
  if (!contractLoading) {
    contractLoading = (async () => {
      const response = await fetch(new URL('contract.json', APP_BASE));
      if (!response.ok) throw new BackendError(`could not load contract.json (${response.status})`);
      const contract = await response.json();
      CONTRACT = contract;
      PRESETS = contract.presets;
      return contract;
    })();
    contractLoading.catch(() => { contractLoading = null; });
  }
  return contractLoading;
}

/** The MediaPipe model files' addresses as `facefuse phone` serves them (from the installed
 * mediapipe wheel). */
function faceModelUrls() {
  const dir = new URL('models/mediapipe/', APP_BASE).href;
  return {detector: dir + 'face_detection_short_range.tflite', mesh: dir + 'face_landmark.tflite',
    iris: dir + 'iris_landmark.tflite'};
}

let engineOptions = {}; // loadEngine's options, for the live Workers' own model loads

/** Load the models (the face detector, landmark and iris models, the U-Net) once; later
 * calls return the same engine. options.refiner = false skips loading the U-Net (fusion
 * then needs refine: false); options.refinerUrl, options.liveRefinerUrl (the live view's
 * 160 px file), options.trustUrl (the occlusion trust map's), options.faceModels
 * ({detector, mesh, iris}): the model files' addresses when the page serves them elsewhere. */
export function loadEngine(options = {}) {
  if (!loading) {
    engineOptions = options;
    loading = (async () => {
      const contract = await loadContract();
      // Both on LiteRT.js's CPU runtime: compiling the U-Net and the three MediaPipe models
      // takes a fraction of a second, with no WebGL graph to build or warm.
      const [refiner, models] = await Promise.all([
        options.refiner === false ? null : loadRefiner(APP_BASE, contract, options.refinerUrl),
        loadFaceModels(APP_BASE, options.faceModels ?? faceModelUrls()),
      ]);
      engine = {contract, models, refiner, trustModel: lazyTrustModel(APP_BASE, contract, options.trustUrl)};
      return engine;
    })();
    loading.catch(() => { loading = null; });
  }
  return loading;
}

/** The complete parameter object for `params` (defaults, a named `preset`, then the given
 * values), or a ParameterError with the Python side's message. Loads no model. */
export async function validateParams(params) {
  return validate(params, await loadContract());
}

function pickFace(faces, index, name, detThreshold) {
  if (!faces.length) {
    throw new NoFaceError(`no face found in the ${name}: use a photo with a clearly visible face, or lower --det-threshold (now ${detThreshold})`);
  }
  if (index >= faces.length) {
    throw new NoFaceError(`the ${name} has ${faces.length} face(s); face ${index} does not exist (faces are numbered from 0, largest first)`);
  }
  return faces[index];
}

async function decoded(source, name, contract) {
  if (source !== null && typeof source === 'object' && analysed.has(source)) return analysed.get(source);
  const entry = {rgb: await loadImage(source, name, contract), faces: new Map(), small: null};
  if (source !== null && typeof source === 'object') analysed.set(source, entry);
  return entry;
}

async function facesOf(entry, rgb, detThreshold, contract, thorough) {
  const key = `${rgb.w}x${rgb.h}@${detThreshold}`;
  const known = entry.faces.get(key);
  if (known && (known.thorough || !thorough)) return known.faces;
  const faces = await meshFaces(engine.models, rgb, detThreshold, contract, thorough);
  entry.faces.set(key, {faces, thorough});
  return faces;
}

function publicFace(face, index) {
  return {index, box: face.box.map((v) => Math.round(v * 10) / 10), score: face.score};
}

function asImageData(rgb) {
  const rgba = new Uint8ClampedArray(rgb.w * rgb.h * 4);
  for (let i = 0; i < rgb.w * rgb.h; i++) {
    rgba[4 * i] = rgb.data[3 * i]; rgba[4 * i + 1] = rgb.data[3 * i + 1]; rgba[4 * i + 2] = rgb.data[3 * i + 2]; rgba[4 * i + 3] = 255;
  }
  return typeof ImageData !== 'undefined' ? new ImageData(rgba, rgb.w, rgb.h) : {width: rgb.w, height: rgb.h, data: rgba};
}

function downscaled(entry, side) {
  const rgb = entry.rgb;
  const f = side / Math.max(rgb.w, rgb.h);
  if (f >= 1) return rgb;
  if (entry.small && entry.small.side === side) return entry.small.rgb; // slider moves reuse it
  const small = resizeArea(rgb, Math.max(1, Math.round(rgb.w * f)), Math.max(1, Math.round(rgb.h * f)));
  const out = {w: small.w, h: small.h, c: 3, data: Uint8ClampedArray.from(small.data, (v) => Math.round(v))};
  entry.small = {side, rgb: out};
  return out;
}

async function run(source, template, params, previewSide, options = {}) {
  const timings = new Timings();
  await timings.stage('load', () => loadEngine());
  const {contract} = engine;
  const p = validate(params, contract);
  const srcEntry = await timings.stage('load', () => decoded(source, 'source', contract));
  const tplEntry = await timings.stage('load', () => decoded(template, 'template', contract));
  let srcRgb = srcEntry.rgb; let tplRgb = tplEntry.rgb;
  if (previewSide) { srcRgb = downscaled(srcEntry, previewSide); tplRgb = downscaled(tplEntry, previewSide); }
  const srcFace = await timings.stage('analyse', async () => pickFace(
      await facesOf(srcEntry, srcRgb, p.det_threshold, contract, p.source_face !== 0), p.source_face, 'source', p.det_threshold));
  const aligned = await timings.stage('align', () => {
    const a = alignFace(srcRgb, srcFace, p.crop_size, contract); roundInPlace(a.crop); return a;
  });
  // options.templateFaces: faces already known in the template (the live view's tracked
  // face for the shutter's still), used instead of looking for them.
  const tplFaces = options.templateFaces ??
    await timings.stage('analyse', () => facesOf(tplEntry, tplRgb, p.det_threshold, contract, p.template_face !== 0));
  let targets;
  if (p.template_face === 'all') {
    pickFace(tplFaces, 0, 'template', p.det_threshold); targets = tplFaces;
  } else {
    targets = [pickFace(tplFaces, p.template_face, 'template', p.det_threshold)];
  }
  let out = tplRgb;
  for (const face of targets) out = await fuseFace(engine, {face: srcFace, aligned}, out, face, p, timings);
  out = await timings.stage('finish', () => resizeOutput(out, p.resolution));
  const faces = targets.map((f) => publicFace(f, tplFaces.indexOf(f)));
  const ms = Object.fromEntries(STAGES.filter((s) => s in timings.ms).map((s) => [s, Math.round(timings.ms[s] * 10) / 10]));
  ms.total = Math.round(Object.values(timings.ms).reduce((a, b) => a + b, 0) * 10) / 10;
  return {image: asImageData(out), faces, timings: ms, params: p};
}

/** Fuse the source face into the template: {image (ImageData), faces, timings (ms per
 * stage, as `facefuse fuse --timings`), params (the validated values)}.
 * options.templateFaces: the template's faces ({box, landmarks} in its pixels) when already
 * known, e.g. the live view's tracked face (lastLiveFramePixels) for a camera still. */
export function fuse(source, template, params = {}, options = {}) {
  return run(source, template, params, 0, options);
}

/** Fast preview: downscaled copies (640 px long side) on the 320 crop path. */
export function preview(source, template, params = {}) {
  return run(source, template, {...params, crop_size: PREVIEW_CROP}, PREVIEW_SIDE);
}

/** Resolves when `file` (a Blob) is an image within the limits, as far as its bytes and
 * header say: rejects with the ImageError `fuse` would give, before any pixel is decoded
 * (a page should ask this before it decodes a picked photo itself). Loads no model. */
export async function checkImage(file, name = 'image') {
  await checkFile(file, name, await loadContract());
}

/** The faces of `image`, largest first, numbered from 0 (for the face picker). */
export async function detectFaces(image, params = {}) {
  await loadEngine();
  const {contract} = engine;
  const p = validate(params, contract);
  const entry = await decoded(image, 'template', contract);
  const faces = await facesOf(entry, entry.rgb, p.det_threshold, contract, true);
  return faces.map(publicFace);
}

/** A Blob of a result image (PNG by default, or 'image/jpeg' with quality 0..1). */
export async function toBlob(image, type = 'image/png', quality = 0.95) {
  const canvas = new OffscreenCanvas(image.width, image.height);
  const data = image instanceof ImageData ? image : new ImageData(image.data, image.width, image.height);
  canvas.getContext('2d').putImageData(data, 0, 0);
  return canvas.convertToBlob({type, quality});
}

// ---------------------------------------------------------------- live (issue #16)
let liveView = null;
const liveWorkers = {}; // {worker, page}: one per page and kind, models loaded on first start

/** Open the front camera (or `options.stream`) and fuse `source` into every frame on the
 * 320 crop path, drawn onto `options.canvas` (or a new canvas). The frames are fused in a
 * Worker (liveworker.js), or on this page's thread with options.worker = false (what a
 * benchmark's CPU throttling reaches). options.workers: how many Workers take turns (each
 * fuses every other frame; default 2 on a device with 2 or more cores, else 1).
 * options.onEnded: called if the camera stops delivering frames by itself (its track ended)
 * while the view runs; the view is then stopped. Returns {canvas, video}. */
export async function startLive(source, params = {}, options = {}) {
  await loadEngine();
  const {contract} = engine;
  await stopLive();
  const p = liveParams(params, contract);
  const entry = await decoded(source, 'source', contract);
  const face = pickFace(await facesOf(entry, entry.rgb, p.det_threshold, contract, p.source_face !== 0),
      p.source_face, 'source', p.det_threshold);
  const aligned = alignFace(entry.rgb, face, LIVE_CROP, contract);
  roundInPlace(aligned.crop);
  const kind = options.worker === false ? 'page' : 'worker';
  const count = kind === 'page' ? 1 : Math.max(1, options.workers ?? defaultWorkers());
  const pool = (liveWorkers[kind] ??= []);
  while (pool.length < count) {
    pool.push(kind === 'page' ? new LiveWorker(null, new LiveSession())
      : new LiveWorker(new URL('./liveworker.js', import.meta.url)));
  }
  const workers = pool.slice(0, count);
  const init = {type: 'init', base: APP_BASE.href, contract, refine: p.refine,
    faceModels: engineOptions.faceModels ?? faceModelUrls(),
    refinerUrl: engineOptions.liveRefinerUrl ?? new URL(contract.refiner.live_url, APP_BASE).href,
    trustUrl: engineOptions.trustUrl};
  await Promise.all(workers.map((w) => w.ask(init, 'ready')));
  await Promise.all(workers.map((w) => w.ask({type: 'start', source: {face, aligned}, params: p}, 'started')));
  let stream = options.stream;
  if (!stream) {
    try {
      stream = await navigator.mediaDevices.getUserMedia({audio: false,
        video: {facingMode: 'user', width: {ideal: 640}, height: {ideal: 480}}});
    } catch (err) {
      throw new BackendError(`the camera could not be opened: ${err.message || err}`);
    }
  }
  const canvas = options.canvas || document.createElement('canvas');
  const view = new LiveView(workers, stream, canvas);
  liveView = view;
  view.kind = kind;
  view.onEnded = () => {
    if (liveView === view) stopLive();
    if (options.onEnded) options.onEnded();
  };
  await view.start();
  return {canvas, video: view.video};
}

/** Two Workers where there are cores for them: a frame's stages run one after the other,
 * so a second Worker fusing the next frame meanwhile is what turns cores into frames. */
/** Two Workers wherever there are two cores: on the reference machine's two they fuse 29.4
 * fps against one Worker's 22.6, with a lower p95 (docs/phone.md). */
function defaultWorkers() {
  return (globalThis.navigator?.hardwareConcurrency ?? 1) >= 2 ? 2 : 1;
}

/** The live path's parameters: the given values on the 320 crop, one face, no smoothing. */
function liveParams(params, contract) {
  return validate({...params, crop_size: LIVE_CROP, smoothing: 0, poisson: false,
    resolution: 'original', template_face: 0}, contract);
}

/** Change the running live view's parameters (a slider, a gesture) from the next frame on;
 * returns the validated values, or null when no live view runs. */
export function updateLive(params) {
  if (!liveView) return null;
  const p = liveParams(params, engine.contract);
  for (const worker of liveView.workers) worker.post({type: 'params', params: p});
  return p;
}

/** Stop the live view and release the camera; resolves when the frame in flight is back. */
export function stopLive() {
  const view = liveView;
  liveView = null;
  return view ? view.stop() : Promise.resolve();
}

/** The live view's figures since the last call (see LiveView.stats), or null. */
export function stats() {
  return liveView ? liveView.stats() : null;
}

/** The last live frame's {box (the tracked face, or null), w, h}; null before the first. */
export function lastLiveFrame() {
  return liveView && liveView.last ? liveView.last : null;
}

/** The last live frame's pixels before and after fusion ({input, output}: RGB arrays, w, h,
 * box and landmarks of the tracked face, or null), the output read back from the live
 * view's canvas; null before the first frame. The shutter fuses `input` with that face;
 * tests compare input and output. */
export async function lastLiveFramePixels() {
  return liveView ? liveView.lastPixels() : null;
}
