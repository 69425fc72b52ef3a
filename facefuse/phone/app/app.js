// The album page: pick two photos, choose the template's face, move the sliders (instant
// preview), fuse, save or share. All computing is the engine's (./engine/index.js, the same
// API the page exposes as window.facefuse); this file only wires the page to it.

import { buildControls, readPresets, readSpecs } from './controls.js';
import { attachGestures } from './gestures.js';
import { taggedBlob } from './provenance.js';

const $ = (id) => document.getElementById(id);
const DEFAULT_PRESET = 'mobile';
const THUMB_SIDE = 480;

const state = {
  api: null, specs: [], presets: {}, params: {}, setControl: () => {},
  engine: null, photos: { source: null, template: null }, faces: [], preview: { busy: false, again: false },
  queue: Promise.resolve(),
  live: { running: false, busy: false, video: null, timer: 0, stats: null, tracked: 0 },
};
const LIVE_STATS_MS = 1000;

/** Run engine calls one at a time: a fuse tapped while a preview runs waits for it (the
 * landmark graphs take one image at a time). */
function exclusive(task) {
  const run = state.queue.then(task, task);
  state.queue = run.catch(() => {});
  return run;
}

function setStatus(text) { $('status').textContent = text; }

/** `sticky`: the message stays until the user's next action clears it, not at the next
 * preview (the camera stopping by itself is said once, and the preview follows at once). */
function showError(err, { sticky = false } = {}) {
  const box = $('error');
  box.dataset.sticky = err && sticky ? 'yes' : '';
  if (!err) { box.hidden = true; box.textContent = ''; return; }
  box.hidden = false;
  box.textContent = `错误 / Error: ${err.message ?? err}`;
  box.dataset.kind = err.name ?? 'Error';
}

function paramsFor(presetName) {
  const values = Object.fromEntries(state.specs.map((s) => [s.name, s.default]));
  return { ...values, ...(state.presets[presetName] ?? {}) };
}

/** A preset is a whole setting (defaults, then its values), except what was chosen for
 * these photos (which faces, the region's pinch and turn: `per_photo`), which stays. */
function applyPreset(name) {
  const chosen = Object.fromEntries(state.specs.filter((s) => s.perPhoto && s.name in state.params)
    .map((s) => [s.name, state.params[s.name]]));
  state.params = { ...paramsFor(name), ...chosen };
  if (state.faces.length === 0) state.params.template_face = 0;
  for (const [key, value] of Object.entries(state.params)) state.setControl(key, value);
  renderFaceChips();
}

function onParam(name, value, phase) {
  state.params[name] = value;
  if (name === 'template_face') renderFaceChips();
  if (name === 'det_threshold' && phase === 'change') detectTemplateFaces();
  else if (state.live.running) updateLive();
  else schedulePreview();
}

/** A gesture's region values: into the parameters, onto their sliders, then the picture. */
function onGesture(changes, phase) {
  for (const [name, value] of Object.entries(changes)) {
    state.params[name] = value;
    state.setControl(name, value);
  }
  if (!Object.keys(changes).length && phase === 'change') return;
  if (state.live.running) updateLive(); else schedulePreview();
}

function updateLive() {
  try { state.api.updateLive(state.params); } catch (err) { showError(err); }
}

function toImageData(image) {
  if (image instanceof ImageData) return image;
  return new ImageData(new Uint8ClampedArray(image.data.buffer ?? image.data,
    image.data.byteOffset ?? 0, image.width * image.height * 4), image.width, image.height);
}

function draw(canvas, source, maxSide = Infinity) {
  const image = source instanceof ImageBitmap ? source : toImageData(source);
  const scale = Math.min(1, maxSide / Math.max(image.width, image.height));
  canvas.width = Math.round(image.width * scale);
  canvas.height = Math.round(image.height * scale);
  const ctx = canvas.getContext('2d');
  if (image instanceof ImageData && scale === 1) ctx.putImageData(image, 0, 0);
  else if (image instanceof ImageData) {
    createImageBitmap(image).then((b) => ctx.drawImage(b, 0, 0, canvas.width, canvas.height));
  } else ctx.drawImage(image, 0, 0, canvas.width, canvas.height);
  return scale;
}

function faceBox(face) {
  const b = face.box ?? face;
  if (Array.isArray(b)) return { x0: b[0], y0: b[1], x1: b[2], y1: b[3] };
  if ('x0' in b) return b;
  return { x0: b.x, y0: b.y, x1: b.x + b.width, y1: b.y + b.height };
}

function drawTemplate() {
  const photo = state.photos.template;
  if (!photo?.bitmap) return;
  const canvas = $('template-view');
  const scale = draw(canvas, photo.bitmap, THUMB_SIDE);
  const ctx = canvas.getContext('2d');
  ctx.lineWidth = Math.max(2, canvas.width / 160);
  ctx.font = `bold ${Math.max(14, canvas.width / 14)}px system-ui, sans-serif`;
  state.faces.forEach((face, i) => {
    const { x0, y0, x1, y1 } = faceBox(face);
    const chosen = state.params.template_face === 'all' || state.params.template_face === i;
    ctx.strokeStyle = ctx.fillStyle = chosen ? '#22c55e' : '#e7e5e4';
    ctx.strokeRect(x0 * scale, y0 * scale, (x1 - x0) * scale, (y1 - y0) * scale);
    ctx.fillText(String(i), x0 * scale + 4, Math.max(16, y0 * scale - 4));
  });
}

function renderFaceChips() {
  const box = $('faces');
  const choices = state.faces.length > 1 ? ['all', ...state.faces.keys()] : [...state.faces.keys()];
  box.replaceChildren(...choices.map((choice) => {
    const chip = document.createElement('button');
    chip.type = 'button';
    chip.setAttribute('role', 'radio');
    chip.setAttribute('aria-checked', String(state.params.template_face === choice));
    chip.dataset.face = String(choice);
    chip.textContent = choice === 'all' ? '全部 / All' : `人脸 ${choice} / Face ${choice}`;
    chip.addEventListener('click', () => {
      state.params.template_face = choice;
      state.setControl('template_face', choice);
      renderFaceChips();
      schedulePreview();
    });
    return chip;
  }));
  $('faces-section').hidden = state.faces.length === 0;
  drawTemplate();
}

function noFaceMessage() {
  return new Error('模板中没有找到人脸 / no face found in the template: use a photo with a ' +
    `clearly visible face, or lower the detection threshold (now ${state.params.det_threshold})`);
}

async function detectTemplateFaces() {
  const photo = state.photos.template;
  if (!photo || !state.api) return;
  try {
    state.faces = await exclusive(() => state.api.detectFaces(photo.file, state.params));
    const face = state.params.template_face;
    if (face !== 'all' && face >= state.faces.length) state.params.template_face = 0;
    state.setControl('template_face', state.params.template_face);
    showError(state.faces.length ? null : noFaceMessage());
  } catch (err) {
    state.faces = [];
    showError(err);
  }
  renderFaceChips();
  schedulePreview();
}

/** Why the engine refuses a photo (its typed error, in the Python side's words), or null. */
async function engineReason(file) {
  if (!state.api) return null;
  try { await exclusive(() => state.api.detectFaces(file, state.params)); } catch (err) { return err; }
  return null;
}

async function pickPhoto(role, file) {
  if (!file) return;
  showError(null);
  // The engine's checks come first (an image, not cut short, within the size its header
  // states): a small file that unpacks to gigabytes is refused before this page decodes it.
  let reason = null;
  try { await state.engine?.checkImage(file, role); } catch (err) { reason = err; }
  let bitmap = null;
  if (!reason) {
    try {
      bitmap = await createImageBitmap(file, { imageOrientation: 'from-image' });
    } catch {
      // not a picture this browser decodes; said below
    }
  }
  state.photos[role] = bitmap ? { file, bitmap } : null;
  if (role === 'template') {
    state.faces = [];
    state.params.template_face = 0;
    state.setControl('template_face', 0);
  } else if (bitmap) draw($('source-view'), bitmap, THUMB_SIDE);
  if (!bitmap) {
    const thumb = $(`${role}-view`);  // not the last photo's picture over a refused one
    thumb.width = thumb.height = 1;
    showError(reason || (role === 'template' && await engineReason(file))
      || new Error(`无法读取图片 / cannot read ${file.name}: not an image this browser decodes`));
  } else if (role === 'template') await detectTemplateFaces();
  else if (state.live.running) await liveAction(restartLive);  // the new face, live
  else schedulePreview();
  renderFaceChips();
  updateButtons();
}

function updateButtons() {
  $('fuse').disabled = !(state.api && state.photos.source && state.photos.template);
  $('live-toggle').disabled = !(state.api && state.photos.source) || state.live.busy;
  $('shutter').disabled = !state.live.running || state.live.busy;
}

function schedulePreview() {
  const { source, template } = state.photos;
  // While the camera runs the live view is the preview (both would need the landmark graphs).
  if (!state.api || !source || !template || state.live.running) return;
  if (state.preview.busy) { state.preview.again = true; return; }
  state.preview.busy = true;
  const params = { ...state.params };
  exclusive(() => state.api.preview(source.file, template.file, params))
    .then((out) => { draw($('preview'), out.image); if (!$('error').dataset.sticky) showError(null); })
    .catch(showError)
    .finally(() => {
      state.preview.busy = false;
      if (state.preview.again) { state.preview.again = false; schedulePreview(); }
    });
}

async function fuseFull(templateFile = state.photos.template?.file, still = null) {
  const { source } = state.photos;
  const button = $('fuse');
  button.disabled = true;
  showError(null);
  setStatus('正在融合… / fusing…');
  try {
    // A camera still: its one tracked face (see shutter()).
    const params = still ? { ...state.params, template_face: 0 } : { ...state.params };
    const out = await exclusive(() => state.api.fuse(source.file, templateFile, params,
      still ? { templateFaces: still.faces } : {}));
    state.result = out.image;
    state.resultTemplate = templateFile === state.photos.template?.file
      ? state.photos.template.bitmap : await createImageBitmap(templateFile);
    draw($('result'), out.image);
    const times = Object.entries(out.timings ?? {})
      .map(([k, v]) => `${k} ${Number(v).toFixed(0)} ms`).join(' · ');
    $('timings').textContent = `${out.image.width}×${out.image.height}${times ? ` · ${times}` : ''}`;
    $('result-box').hidden = false;
    $('save-row').hidden = false;
    $('result-box').scrollIntoView({ behavior: 'smooth', block: 'start' });
    $('share').hidden = !navigator.share;
    setStatus('完成 / done');
    return true;
  } catch (err) {
    showError(err);
    setStatus('未完成 / not done');
    return false;
  } finally {
    updateButtons();
  }
}

function resultName() {
  const t = new Date();
  const pad = (n) => String(n).padStart(2, '0');
  return `facefuse-${t.getFullYear()}${pad(t.getMonth() + 1)}${pad(t.getDate())}-` +
    `${pad(t.getHours())}${pad(t.getMinutes())}${pad(t.getSeconds())}.jpg`;
}

async function saveResult() {
  const blob = await taggedBlob($('result'), 'image/jpeg', 0.95);
  const link = document.createElement('a');
  link.href = URL.createObjectURL(blob);
  link.download = resultName();
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 60_000);
}

async function shareResult() {
  const blob = await taggedBlob($('result'), 'image/jpeg', 0.95);
  const file = new File([blob], resultName(), { type: 'image/jpeg' });
  if (navigator.canShare?.({ files: [file] })) {
    try { await navigator.share({ files: [file], title: 'facefuse' }); } catch (err) {
      if (err.name !== 'AbortError') showError(err);
    }
  } else await saveResult();
}

/** Press and hold the result to see the template as it was (the WebUI's before/after). */
function holdToCompare(canvas) {
  const show = (before) => {
    const template = state.resultTemplate ?? state.photos.template?.bitmap;
    if (!state.result || !template) return;
    if (before) canvas.getContext('2d').drawImage(template, 0, 0, canvas.width, canvas.height);
    else canvas.getContext('2d').putImageData(toImageData(state.result), 0, 0);
  };
  canvas.addEventListener('pointerdown', () => show(true));
  for (const type of ['pointerup', 'pointerleave', 'pointercancel']) {
    canvas.addEventListener(type, () => show(false));
  }
  canvas.addEventListener('contextmenu', (e) => e.preventDefault());  // no long-press menu
}

// ------------------------------------------------------------------ the live view (#16)

function showLiveStats() {
  const s = state.api.stats();
  if (!s) return;
  state.live.stats = s;
  state.live.tracked += s.faces_tracked;  // fused frames since the page opened
  $('live-stats').textContent = `${s.fps.toFixed(1)} fps · ${s.frame_ms_p50.toFixed(0)} ms ` +
    `(p95 ${s.frame_ms_p95.toFixed(0)}) · 人脸 / faces ${s.faces_tracked} · ` +
    `丢帧 / dropped ${s.frames_dropped}`;
}

/** One live action at a time (start, stop, shutter, a new source): a second tap while the
 * camera opens or a still is fused is ignored, where it used to open a second camera
 * session (two stats timers, one never cleared) or save the still twice. */
async function liveAction(action) {
  if (state.live.busy) return;
  state.live.busy = true;
  updateButtons();
  try {
    await action();
  } finally {
    state.live.busy = false;
    updateButtons();
  }
}

/** The camera stopped by itself: say so, instead of a frozen view that still looks live.
 * The message goes up in the same turn as the view stops (stopLive's first part), not after
 * the frame in flight has finished: nothing sees a stopped view without its reason. */
async function cameraEnded() {
  const stopping = state.live.running ? stopLive() : null;
  showError(new Error('相机已停止 / the camera stopped (another app took it, or its ' +
    'permission was withdrawn): tap Start live to open it again'), { sticky: true });
  setStatus('相机已停止 / the camera stopped');
  await stopping;
}

/** The front camera with the source fused into every frame, on the engine's 320 crop path. */
async function startLive() {
  showError(null);
  setStatus('正在打开相机… / opening the camera…');
  try {
    const canvas = $('live-view');
    const { video } = await exclusive(() => state.api.startLive(state.photos.source.file,
      { ...state.params }, { canvas, onEnded: cameraEnded }));
    state.live.running = true;
    state.live.video = video;
    canvas.hidden = false;
    clearInterval(state.live.timer);
    state.live.timer = setInterval(showLiveStats, LIVE_STATS_MS);
    $('live-toggle').textContent = '停止实时 / Stop live';
    setStatus('实时 / live');
  } catch (err) {
    showError(err);
    setStatus('相机未打开 / the camera did not open');
  }
  updateButtons();
}

async function stopLive() {
  const stopped = state.api.stopLive();
  clearInterval(state.live.timer);
  state.live.running = false;
  state.live.video = null;
  $('live-toggle').textContent = '开始实时 / Start live';
  setStatus('就绪 / ready');
  updateButtons();
  await stopped;  // the frame in flight has finished with the landmark graphs
  schedulePreview();
}

/** A new source picked while live: the view fuses the face now on screen (it kept the old
 * one, and the shutter then fused the new one into a still that did not match the view). */
async function restartLive() {
  await stopLive();
  await startLive();
}

/** The camera's frame at its full resolution, fused by the album path (the full crop, every
 * stage) and saved with the AI tag; the live view pauses meanwhile and then goes on.
 * The still is the last frame the live view fused, with the face it tracked there: the
 * album path's own face search can miss a face the tracker still follows (half out of the
 * picture, turned), and the shutter must not then fail with "no face". */
async function shutter() {
  if (!state.live.running) return;
  const frame = await state.api.lastLiveFramePixels();
  if (!frame) return;
  await stopLive();
  const rgba = new Uint8ClampedArray(frame.w * frame.h * 4);
  for (let i = 0, j = 0; j < rgba.length; i += 3, j += 4) {
    rgba[j] = frame.input[i]; rgba[j + 1] = frame.input[i + 1]; rgba[j + 2] = frame.input[i + 2]; rgba[j + 3] = 255;
  }
  const still = new ImageData(rgba, frame.w, frame.h);
  const faces = frame.box ? [{ box: frame.box, score: 1, landmarks: frame.landmarks }] : undefined;
  if (await fuseFull(still, faces && { faces })) await saveResult();
  await startLive();
}

function liveFaceSize(canvas) {
  const frame = state.api?.lastLiveFrame();
  if (!frame?.box || !canvas.width) return null;
  const k = canvas.clientWidth / canvas.width;
  return { w: (frame.box[2] - frame.box[0]) * k, h: (frame.box[3] - frame.box[1]) * k };
}

function previewFaceSize(canvas) {
  const face = state.faces[state.params.template_face === 'all' ? 0 : state.params.template_face];
  const bitmap = state.photos.template?.bitmap;
  if (!face || !bitmap) return null;
  const { x0, y0, x1, y1 } = faceBox(face);
  const k = canvas.clientWidth / bitmap.width;
  return { w: (x1 - x0) * k, h: (y1 - y0) * k };
}

async function registerOffline() {
  if (!('serviceWorker' in navigator)) {
    document.documentElement.dataset.offline = 'unsupported';
    return;
  }
  try {
    const reg = await navigator.serviceWorker.register('sw.js');
    await navigator.serviceWorker.ready;  // active = every file is in the cache
    document.documentElement.dataset.offline = 'ready';
    if (reg.waiting) setStatus('新版本已下载，重开生效 / update ready: reopen the app');
  } catch (err) {
    // Browsers refuse service workers on an untrusted certificate: see ca.html.
    document.documentElement.dataset.offline = 'refused';
    console.warn('offline use unavailable:', err.message);
  }
}

async function loadEngineModule() {
  try {
    return await import('./engine/index.js');
  } catch (err) {
    console.warn('engine not loaded:', err.message);
    return null;
  }
}

async function start() {
  window.facefuseApp = { state };  // the page's state, for tests and debugging
  const offline = registerOffline();
  const response = await fetch('contract.json');
  if (!response.ok) throw new Error(`contract.json: HTTP ${response.status}`);
  const contract = await response.json();
  state.specs = readSpecs(contract);
  state.presets = readPresets(contract);
  const presetSelect = $('preset');
  for (const name of Object.keys(state.presets)) presetSelect.add(new Option(name, name));
  presetSelect.value = DEFAULT_PRESET;
  presetSelect.addEventListener('change', () => { applyPreset(presetSelect.value); detectTemplateFaces(); });
  state.params = paramsFor(DEFAULT_PRESET);
  state.setControl = buildControls($('params'), state.specs, state.params, onParam);
  for (const role of ['source', 'template']) {
    for (const suffix of ['file', 'camera']) {
      $(`${role}-${suffix}`).addEventListener('change', (e) => pickPhoto(role, e.target.files[0]));
    }
  }
  $('fuse').addEventListener('click', () => fuseFull());
  $('save').addEventListener('click', saveResult);
  $('share').addEventListener('click', shareResult);
  holdToCompare($('result'));
  $('live-toggle').addEventListener('click',
    () => liveAction(state.live.running ? stopLive : startLive));
  $('shutter').addEventListener('click', () => liveAction(shutter));
  const read = () => state.params;
  attachGestures($('preview'), { specs: state.specs, read, write: onGesture,
    faceSize: () => previewFaceSize($('preview')) });
  attachGestures($('live-view'), { specs: state.specs, read, write: onGesture,
    faceSize: () => liveFaceSize($('live-view')) });
  document.documentElement.dataset.ready = 'shell';
  performance.mark('facefuse-shell');  // controls usable (facefuse bench --only phone-app-start)
  setStatus('正在加载引擎… / loading the engine…');

  const api = await loadEngineModule();
  state.engine = api;  // its file checks need no model: a photo picked now is checked too
  if (api) {
    window.facefuse = api;
    try {
      await api.loadEngine();
      state.api = api;
      document.documentElement.dataset.ready = 'engine';
      performance.mark('facefuse-engine');  // models loaded: the app can fuse
      setStatus('就绪 / ready');
    } catch (err) {
      showError(err);
      setStatus('引擎无法启动 / the engine could not start');
    }
  } else {
    document.documentElement.dataset.ready = 'no-engine';
    setStatus('此版本没有引擎 / this build has no engine');
  }
  updateButtons();
  await offline;
}

start().catch((err) => { showError(err); setStatus('加载失败 / failed to load'); });
