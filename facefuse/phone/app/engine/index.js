// The facefuse engine for the browser: the JS API the phone app (and any web page) calls.
// Mirrors facefuse/pipeline.py stage by stage; everything runs on this device, nothing is
// uploaded. Parameters, index sets and constants come from ../contract.json (written by
// facefuse/phone/contract.py).
import {alignFace} from './align.js';
import {BackendError, FaceFuseError, ImageError, NoFaceError, ParameterError} from './errors.js';
import {anchorPoints, applyField, buildPlan, fuseShape, landmarkPoints, planField} from './geometry.js';
import {loadImage} from './image.js';
import {detectFaces as meshFaces, loadMesh, mouthOpenRatio} from './landmarks.js';
import {validateParams as validate} from './params.js';
import {pasteBack} from './paste.js';
import {makeImage, resizeArea} from './raster.js';
import {loadRefiner, refine, refineSide} from './refine.js';
import {adjustTone, applyMode, resizeOutput, smoothSkin} from './finish.js';
import {faceMask, mix, skinMask} from './texture.js';

export {BackendError, FaceFuseError, ImageError, NoFaceError, ParameterError};

export const STAGES = ['load', 'analyse', 'align', 'geometry', 'texture', 'refine', 'paste', 'finish'];
const APP_BASE = new URL('../', import.meta.url);
const PREVIEW_SIDE = 640; // the preview fuses downscaled copies on the 320 crop path
const PREVIEW_CROP = 320;

let engine = null; // {contract, mesh, refiner}; one per page, loaded once
let loading = null;
const analysed = new WeakMap(); // source object -> {rgb, faces: Map(key -> faces)}

/** The contract (parameters, presets, index sets), as the app builds its controls from. */
export let CONTRACT = null;
/** Named presets ('desktop', 'mobile') with the Python side's values. */
export let PRESETS = {};

async function loadContract() {
  const response = await fetch(new URL('contract.json', APP_BASE));
  if (!response.ok) throw new BackendError(`could not load contract.json (${response.status})`);
  return response.json();
}

/** Load the models (Face Mesh, the U-Net) once; later calls return the same engine.
 * options.refiner = false skips loading the U-Net (fusion then needs refine: false). */
export function loadEngine(options = {}) {
  if (!loading) {
    loading = (async () => {
      const contract = await loadContract();
      CONTRACT = contract;
      PRESETS = contract.presets;
      // One after the other: both runtimes are Emscripten builds that pass their set-up
      // through the same globals while they load.
      const refiner = options.refiner === false ? null : await loadRefiner(APP_BASE, contract);
      const mesh = await loadMesh(APP_BASE);
      // Build the default threshold's face finder now, not on the first photo.
      await mesh.finder(contract.params.find((q) => q.name === 'det_threshold').default);
      engine = {contract, mesh, refiner};
      return engine;
    })();
    loading.catch(() => { loading = null; });
  }
  return loading;
}

export async function validateParams(params) {
  const {contract} = await loadEngine();
  return validate(params, contract);
}

class Timings {
  constructor() { this.ms = {}; }
  async stage(name, fn) {
    const t0 = performance.now();
    try { return await fn(); } finally { this.ms[name] = (this.ms[name] || 0) + performance.now() - t0; }
  }
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

async function facesOf(entry, rgb, detThreshold, contract) {
  const key = `${rgb.w}x${rgb.h}@${detThreshold}`;
  if (!entry.faces.has(key)) entry.faces.set(key, await meshFaces(engine.mesh, rgb, detThreshold, contract));
  return entry.faces.get(key);
}

function roundInPlace(img) {
  for (let i = 0; i < img.data.length; i++) img.data[i] = Math.round(img.data[i]);
  return img;
}

/** Every stage from align to finish for one face of `image` (pipeline.fuse_face). */
async function fuseFace(src, image, face, p, timings) {
  const {contract, refiner} = engine;
  const size = p.crop_size;
  const tpl = await timings.stage('align', () => {
    const a = alignFace(image, face, size, contract); roundInPlace(a.crop); return a;
  });
  const geo = await timings.stage('geometry', () => {
    const tplPts = landmarkPoints(tpl.landmarks);
    const shape = p.ratio === 0 ? tplPts : fuseShape(src.aligned.landmarks, tpl.landmarks, p.shape_ratio, contract);
    const anchors = anchorPoints(shape, size, contract);
    const plan = buildPlan(shape, anchors, size, contract);
    const field = planField(plan, tplPts, anchors);
    const tplWarped = roundInPlace(applyField(field, tpl.crop));
    const srcWarped = p.ratio > 0 ? roundInPlace(applyField(planField(plan, landmarkPoints(src.aligned.landmarks), anchors), src.aligned.crop)) : null;
    return {shape, field, tplWarped, srcWarped};
  });
  const region = {scale: p.region_scale, rotation: p.region_rotation, offset_x: p.region_offset_x, offset_y: p.region_offset_y};
  let {image: fused, weight, face: faceRegion, skin} = await timings.stage('texture', () => {
    if (p.ratio > 0) {
      const open = mouthOpenRatio(face.landmarks, contract.landmarks) > contract.constants.mouth_open_threshold;
      return mix(geo.srcWarped, geo.tplWarped, geo.shape, p.ratio, open, region, contract);
    }
    const fm = faceMask(geo.shape, size, region, contract);
    return {image: geo.tplWarped, weight: makeImage(size, size, 1), face: fm, skin: skinMask(geo.shape, size, fm, contract)};
  });
  if (p.refine && p.ratio > 0) {
    if (!refiner) throw new BackendError('the U-Net refiner is not loaded: call loadEngine() without {refiner: false}, or set refine: false');
    fused = await timings.stage('refine', () => refine(refiner, fused, faceRegion, geo.tplWarped, refineSide(size, contract)));
  }
  fused = await timings.stage('finish', () => {
    let f = p.ratio === 0 ? geo.tplWarped : fused;
    f = applyMode(f, geo.tplWarped, weight, faceRegion, p.mode);
    f = smoothSkin(f, skin, p.smoothing);
    return adjustTone(f, faceRegion, p.brightness, p.contrast, p.saturation);
  });
  return timings.stage('paste', () => {
    const eps = contract.constants.region_eps;
    const delta = makeImage(size, size, 3);
    for (let i = 0; i < size * size; i++) {
      if (faceRegion.data[i] > eps) for (let k = 0; k < 3; k++) delta.data[3 * i + k] = fused.data[3 * i + k] - geo.tplWarped.data[3 * i + k];
    }
    return pasteBack(image, tpl, geo.field, delta, faceRegion, contract);
  });
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

function downscaled(rgb, side) {
  const f = side / Math.max(rgb.w, rgb.h);
  if (f >= 1) return rgb;
  const small = resizeArea(rgb, Math.max(1, Math.round(rgb.w * f)), Math.max(1, Math.round(rgb.h * f)));
  return {w: small.w, h: small.h, c: 3, data: Uint8ClampedArray.from(small.data, (v) => Math.round(v))};
}

async function run(source, template, params, previewSide) {
  const timings = new Timings();
  await timings.stage('load', () => loadEngine());
  const {contract} = engine;
  const p = validate(params, contract);
  const srcEntry = await timings.stage('load', () => decoded(source, 'source', contract));
  const tplEntry = await timings.stage('load', () => decoded(template, 'template', contract));
  let srcRgb = srcEntry.rgb; let tplRgb = tplEntry.rgb;
  if (previewSide) { srcRgb = downscaled(srcRgb, previewSide); tplRgb = downscaled(tplRgb, previewSide); }
  const srcFace = await timings.stage('analyse', async () => pickFace(
      await facesOf(srcEntry, srcRgb, p.det_threshold, contract), p.source_face, 'source', p.det_threshold));
  const aligned = await timings.stage('align', () => {
    const a = alignFace(srcRgb, srcFace, p.crop_size, contract); roundInPlace(a.crop); return a;
  });
  const tplFaces = await timings.stage('analyse', () => facesOf(tplEntry, tplRgb, p.det_threshold, contract));
  let targets;
  if (p.template_face === 'all') {
    pickFace(tplFaces, 0, 'template', p.det_threshold); targets = tplFaces;
  } else {
    targets = [pickFace(tplFaces, p.template_face, 'template', p.det_threshold)];
  }
  let out = tplRgb;
  for (const face of targets) out = await fuseFace({face: srcFace, aligned}, out, face, p, timings);
  out = await timings.stage('finish', () => resizeOutput(out, p.resolution));
  const faces = targets.map((f) => publicFace(f, tplFaces.indexOf(f)));
  const ms = Object.fromEntries(STAGES.filter((s) => s in timings.ms).map((s) => [s, Math.round(timings.ms[s] * 10) / 10]));
  ms.total = Math.round(Object.values(timings.ms).reduce((a, b) => a + b, 0) * 10) / 10;
  return {image: asImageData(out), faces, timings: ms, params: p};
}

/** Fuse the source face into the template: {image (ImageData), faces, timings (ms per
 * stage, as `facefuse fuse --timings`), params (the validated values)}. */
export function fuse(source, template, params = {}) {
  return run(source, template, params, 0);
}

/** Fast preview: downscaled copies (640 px long side) on the 320 crop path. */
export function preview(source, template, params = {}) {
  return run(source, template, {...params, crop_size: PREVIEW_CROP}, PREVIEW_SIDE);
}

/** The faces of `image`, largest first, numbered from 0 (for the face picker). */
export async function detectFaces(image, params = {}) {
  await loadEngine();
  const {contract} = engine;
  const p = validate(params, contract);
  const entry = await decoded(image, 'template', contract);
  const faces = await facesOf(entry, entry.rgb, p.det_threshold, contract);
  return faces.map(publicFace);
}

/** A Blob of a result image (PNG by default, or 'image/jpeg' with quality 0..1). */
export async function toBlob(image, type = 'image/png', quality = 0.95) {
  const canvas = new OffscreenCanvas(image.width, image.height);
  const data = image instanceof ImageData ? image : new ImageData(image.data, image.width, image.height);
  canvas.getContext('2d').putImageData(data, 0, 0);
  return canvas.convertToBlob({type, quality});
}
