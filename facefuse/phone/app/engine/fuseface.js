// One face through every stage from align to finish (pipeline.fuse_face), shared by the
// album path (index.js) and the camera path (live.js).
import {alignFace} from './align.js';
import {BackendError} from './errors.js';
import {adjustTone, applyMode, smoothSkin} from './finish.js';
import {anchorPoints, applyField, buildPlan, fuseShape, landmarkPoints, planField} from './geometry.js';
import {mouthOpenRatio} from './landmarks.js';
import {pasteBack} from './paste.js';
import {makeImage} from './raster.js';
import {refine, refineSide} from './refine.js';
import {faceMask, mix, skinMask} from './texture.js';
import {sourceTrust, templateTrust} from './occlusion.js';
import {featureShifts, registerPoints} from './registration.js';

/** Milliseconds per stage; `await timings.stage('x', fn)` adds fn's time to stage x. */
export class Timings {
  constructor() { this.ms = {}; }
  async stage(name, fn) {
    const t0 = performance.now();
    try { return await fn(); } finally { this.ms[name] = (this.ms[name] || 0) + performance.now() - t0; }
  }
}

export function roundInPlace(img) {
  for (let i = 0; i < img.data.length; i++) img.data[i] = Math.round(img.data[i]);
  return img;
}

/** Every stage from align to finish for one face of `image` (pipeline.fuse_face). */
export async function fuseFace(engine, src, image, face, p, timings) {
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
    let srcPts = landmarkPoints(src.aligned.landmarks);
    let srcField = null;
    const warpSource = () => {
      srcField = planField(plan, srcPts, anchors);
      return roundInPlace(applyField(srcField, src.aligned.crop));
    };
    let srcWarped = p.ratio > 0 ? warpSource() : null;
    // The features registered by their look, not only by the mesh.
    for (let pass = 0; srcWarped && p.feature_registration && pass < contract.register.passes; pass++) {
      const shifts = featureShifts(srcWarped, tplWarped, shape, contract.register);
      if (!Object.values(shifts).some(([dx, dy]) => dx || dy)) break;
      srcPts = registerPoints(srcPts, shape, shifts, contract.register);
      srcWarped = warpSource();
    }
    return {shape, field, tplWarped, srcWarped, srcField};
  });
  const region = {scale: p.region_scale, rotation: p.region_rotation, offset_x: p.region_offset_x, offset_y: p.region_offset_y};
  let tplTrust = null;
  let {image: fused, weight, face: faceRegion, skin} = await timings.stage('texture', async () => {
    if (p.ratio > 0) {
      const open = mouthOpenRatio(face.landmarks, contract.landmarks) > contract.constants.mouth_open_threshold;
      const trusts = [];
      if (p.occlusion) {
        if (!engine.trustModel) throw new BackendError('the occlusion trust model is not loaded: this engine was made without it, or set occlusion: false');
        const model = await engine.trustModel();
        const srcTrust = applyField(geo.srcField, await sourceTrust(src, contract, model));
        tplTrust = await templateTrust(geo.tplWarped, geo.shape, contract, model);
        trusts.push(srcTrust, tplTrust);
      }
      return mix(geo.srcWarped, geo.tplWarped, geo.shape, p.ratio, open, region, contract, trusts);
    }
    const fm = faceMask(geo.shape, size, region, contract);
    return {image: geo.tplWarped, weight: makeImage(size, size, 1), face: fm, skin: skinMask(geo.shape, size, fm, contract)};
  });
  // Later stages change only what is the template's face: its occluders stay.
  let touch = faceRegion;
  if (tplTrust) {
    touch = makeImage(size, size, 1); const bare = makeImage(size, size, 1);
    for (let i = 0; i < touch.data.length; i++) {
      touch.data[i] = Math.fround(faceRegion.data[i] * tplTrust.data[i]);
      bare.data[i] = Math.fround(skin.data[i] * tplTrust.data[i]);
    }
    skin = bare;
  }
  if (p.refine && p.ratio > 0) {
    if (!refiner) throw new BackendError('the U-Net refiner is not loaded: call loadEngine() without {refiner: false}, or set refine: false');
    fused = await timings.stage('refine', () => refine(refiner, fused, touch, geo.tplWarped, refineSide(size, contract), tplTrust));
  }
  fused = await timings.stage('finish', () => {
    let f = p.ratio === 0 ? geo.tplWarped : fused;
    f = applyMode(f, geo.tplWarped, weight, touch, p.mode);
    f = smoothSkin(f, skin, p.smoothing);
    return adjustTone(f, touch, p.brightness, p.contrast, p.saturation);
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

