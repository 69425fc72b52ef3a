// Touch gestures on a fused picture (the album preview, the live view), the phone study's
// third tier: pinch to zoom and two-finger rotate the fused region, one-finger drag to move
// it, double-tap to reset. They set the same four FusionParams fields as the sliders
// (region_scale, region_rotation, region_offset_x/y), clamped to the ranges contract.json
// gives, so a gesture can never ask the engine for a value it would refuse.

export const REGION_FIELDS = ['region_scale', 'region_rotation', 'region_offset_x', 'region_offset_y'];
const DOUBLE_TAP_MS = 350;
const TAP_MOVE_PX = 12;

function clampToSpec(spec, value) {
  const step = spec.step ?? 0.01;
  const stepped = Math.round(value / step) * step;
  const clamped = Math.min(spec.max, Math.max(spec.min, stepped));
  return Number(clamped.toFixed(6));
}

const distance = (a, b) => Math.hypot(b.x - a.x, b.y - a.y);
const angle = (a, b) => Math.atan2(b.y - a.y, b.x - a.x);

/**
 * Follow the pointers on `element` and turn them into region parameters.
 * specs: the contract's specs (by name); read(): the current parameter values;
 * write(changes, phase): apply {name: value} ('input' while fingers move, 'change' at the end);
 * faceSize(): the face's {w, h} in CSS pixels on the element, or null (then a third of the
 * element's width stands for it: offsets are in face widths and heights).
 */
export function attachGestures(element, { specs, read, write, faceSize }) {
  const spec = Object.fromEntries(specs.filter((s) => REGION_FIELDS.includes(s.name)).map((s) => [s.name, s]));
  const pointers = new Map();
  let start = null;  // the values and pointer positions when the current set of fingers began
  let lastTap = 0;
  let tap = null;

  const begin = () => {
    const values = read();
    start = { values: Object.fromEntries(REGION_FIELDS.map((k) => [k, values[k]])),
      points: [...pointers.values()].map((p) => ({ ...p })) };
  };

  const size = () => {
    const face = faceSize?.();
    if (face && face.w > 0 && face.h > 0) return face;
    const side = element.getBoundingClientRect().width / 3 || 1;
    return { w: side, h: side };
  };

  const follow = () => {
    if (!start) return;
    const now = [...pointers.values()];
    const changes = {};
    if (now.length === 1 && start.points.length === 1) {
      const { w, h } = size();
      changes.region_offset_x = start.values.region_offset_x + (now[0].x - start.points[0].x) / w;
      changes.region_offset_y = start.values.region_offset_y + (now[0].y - start.points[0].y) / h;
    } else if (now.length >= 2 && start.points.length >= 2) {
      const d0 = distance(start.points[0], start.points[1]);
      if (d0 > 0) changes.region_scale = start.values.region_scale * distance(now[0], now[1]) / d0;
      // Screen y points down, so a clockwise turn of the fingers is a positive angle, as
      // region_rotation turns the region clockwise on screen (texture.py's -rotation).
      let turn = angle(now[0], now[1]) - angle(start.points[0], start.points[1]);
      turn = Math.atan2(Math.sin(turn), Math.cos(turn));
      changes.region_rotation = start.values.region_rotation + turn * 180 / Math.PI;
    }
    const clamped = Object.fromEntries(Object.entries(changes)
      .filter(([k]) => spec[k]).map(([k, v]) => [k, clampToSpec(spec[k], v)]));
    if (Object.keys(clamped).length) write(clamped, 'input');
  };

  element.style.touchAction = 'none';  // the page must not scroll or zoom under the fingers
  element.addEventListener('pointerdown', (e) => {
    element.setPointerCapture?.(e.pointerId);
    pointers.set(e.pointerId, { x: e.clientX, y: e.clientY });
    tap = pointers.size === 1 ? { x: e.clientX, y: e.clientY, t: e.timeStamp } : null;
    begin();
  });
  element.addEventListener('pointermove', (e) => {
    if (!pointers.has(e.pointerId)) return;
    pointers.set(e.pointerId, { x: e.clientX, y: e.clientY });
    if (tap && Math.hypot(e.clientX - tap.x, e.clientY - tap.y) > TAP_MOVE_PX) tap = null;
    follow();
  });
  const end = (e) => {
    if (!pointers.delete(e.pointerId)) return;
    if (pointers.size === 0) {
      if (tap && e.type === 'pointerup') {
        if (e.timeStamp - lastTap < DOUBLE_TAP_MS) {  // double-tap: back to the defaults
          write(Object.fromEntries(REGION_FIELDS.filter((k) => spec[k]).map((k) => [k, spec[k].default])), 'change');
          lastTap = 0; tap = null; start = null;
          return;
        }
        lastTap = e.timeStamp;
      }
      tap = null;
      start = null;
      write({}, 'change');
    } else begin();  // one finger of two lifted: carry on from here
  };
  for (const type of ['pointerup', 'pointercancel']) element.addEventListener(type, end);
}
