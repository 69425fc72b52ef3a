// The live view's Worker: the landmark models, the U-Net and every stage of a frame run
// here, so the page's main thread only moves camera frames in and fused frames out.
// Messages in: {type: 'init', base, contract, faceModels, refinerUrl, refine} (load the
// models, once), {type: 'start', source, params}, {type: 'params', params},
// {type: 'frame', bitmap} (answered with {type: 'frame', bitmap, box, stages}),
// {type: 'last'} (the last frame's pixels before and after, RGB).
//
// A classic worker that loads the engine's ES modules with import(): LiteRT.js loads its
// wasm glue with importScripts(), which module workers refuse.
const modules = Promise.all([import('./facemodels.js'), import('./liveframe.js'), import('./refine.js')])
    .then(([faces, live, refine]) => ({loadFaceModels: faces.loadFaceModels, LiveFuser: live.LiveFuser,
      loadRefiner: refine.loadRefiner}));

let engine = null;
let fuser = null;
let canvas = null;
let last = null;

async function init(msg) {
  const {loadFaceModels, loadRefiner} = await modules;
  if (!engine) {
    const [refiner, models] = await Promise.all([
      msg.refine ? loadRefiner(msg.base, msg.contract, msg.refinerUrl) : null,
      loadFaceModels(msg.base, msg.faceModels),
    ]);
    engine = {contract: msg.contract, models, refiner};
  } else if (msg.refine && !engine.refiner) {
    engine.refiner = await loadRefiner(msg.base, msg.contract, msg.refinerUrl);
  }
}

async function frame(bitmap) {
  const {width: w, height: h} = bitmap;
  if (!canvas || canvas.width !== w || canvas.height !== h) canvas = new OffscreenCanvas(w, h);
  const ctx = canvas.getContext('2d', {willReadFrequently: true});
  ctx.drawImage(bitmap, 0, 0);
  bitmap.close();
  const image = ctx.getImageData(0, 0, w, h);
  const input = image.data.slice();
  const {box, stages} = await fuser.frame(image.data, w, h);
  last = {input, output: image.data, w, h, box};
  ctx.putImageData(image, 0, 0);
  const out = await createImageBitmap(canvas);
  self.postMessage({type: 'frame', bitmap: out, box, stages}, [out]);
}

function rgbOf(rgba) {
  const rgb = new Uint8ClampedArray((rgba.length / 4) * 3);
  for (let i = 0, j = 0; i < rgb.length; i += 3, j += 4) { rgb[i] = rgba[j]; rgb[i + 1] = rgba[j + 1]; rgb[i + 2] = rgba[j + 2]; }
  return rgb;
}

self.onmessage = async ({data: msg}) => {
  try {
    if (msg.type === 'init') {
      await init(msg);
      self.postMessage({type: 'ready'});
    } else if (msg.type === 'start') {
      fuser = new (await modules).LiveFuser(engine, msg.source, msg.params);
      last = null;
      self.postMessage({type: 'started'});
    } else if (msg.type === 'params') {
      if (fuser) fuser.params = msg.params;
    } else if (msg.type === 'frame') {
      await frame(msg.bitmap);
    } else if (msg.type === 'last') {
      const pixels = last && {input: rgbOf(last.input), output: rgbOf(last.output), w: last.w, h: last.h, box: last.box};
      self.postMessage({type: 'last', last: pixels});
    }
  } catch (err) {
    self.postMessage({type: 'error', message: err.message || String(err), name: err.name});
  }
};
