// Parameter controls generated from contract.json (written from facefuse.params by
// facefuse/phone/contract.py), so the phone shows every FusionParams field with the same
// name, range, step, default and bilingual label as the CLI and the WebUI.

const GROUP_LABELS = {
  fusion: '融合 / Fusion', finish: '修饰 / Finish', detection: '检测 / Detection',
  region: '区域 / Region (zoom, rotate)', model: '模型 / Model',
};
const OPEN_GROUPS = new Set(['fusion', 'finish']);

function bilingual(label, fallback) {
  if (!label) return fallback;
  if (typeof label === 'string') return label;
  const zh = label.zh ?? label['zh-CN'] ?? label.cn;
  const en = label.en ?? label['en-US'];
  return [zh, en].filter(Boolean).join(' / ') || fallback;
}

/** The contract's parameters as a list of plain specs, whatever its container shape; not
 * the desktop-only ones (not mirrored in the browser engine yet) nor the runtime-only ones
 * (a desktop runtime choice: the browser has one runtime; the engine takes them). */
export function readSpecs(contract) {
  const raw = contract.params ?? contract.fusion_params ?? contract.parameters ?? [];
  const list = Array.isArray(raw) ? raw : Object.entries(raw).map(([name, p]) => ({ name, ...p }));
  const labels = contract.labels ?? {};
  return list.map((p) => {
    const meta = p.metadata ?? {};
    const range = p.range ?? [];
    return {
      name: p.name,
      kind: p.kind ?? meta.kind,
      default: p.default,
      min: p.min ?? meta.min ?? range[0],
      max: p.max ?? meta.max ?? range[1],
      step: p.step ?? meta.step,
      choices: p.choices ?? meta.choices,
      group: p.group ?? meta.group ?? 'fusion',
      label: bilingual(p.label ?? p.labels ?? labels[p.name], p.name),
      help: bilingual(p.help ?? meta.help, ''),
      desktopOnly: Boolean(p.desktop_only ?? meta.desktop_only),
      runtimeOnly: Boolean(p.runtime_only ?? meta.runtime_only),
      perPhoto: Boolean(p.per_photo ?? meta.per_photo),
    };
  }).filter((spec) => !spec.desktopOnly && !spec.runtimeOnly);
}

export function readPresets(contract) {
  return contract.presets ?? {};
}

function decimals(step) {
  const text = String(step ?? 0.01);
  return text.includes('.') ? text.split('.')[1].length : 0;
}

function field(spec, value, onChange) {
  const wrap = document.createElement('div');
  wrap.className = 'param';
  wrap.dataset.name = spec.name;
  const id = `param-${spec.name}`;
  const head = document.createElement('div');
  head.className = 'head';
  const label = document.createElement('label');
  label.htmlFor = id;
  label.textContent = spec.label;
  head.append(label);
  wrap.append(head);
  let input;
  if (spec.kind === 'float') {
    input = document.createElement('input');
    input.type = 'range';
    Object.assign(input, { min: spec.min, max: spec.max, step: spec.step ?? 0.01 });
    const out = document.createElement('output');
    out.htmlFor = id;
    const show = () => { out.value = Number(input.value).toFixed(decimals(spec.step)); };
    input.addEventListener('input', () => { show(); onChange(spec.name, Number(input.value), 'input'); });
    input.addEventListener('change', () => onChange(spec.name, Number(input.value), 'change'));
    input.setValue = (v) => { input.value = v; show(); };
    head.append(out);
  } else if (spec.kind === 'choice' || spec.kind === 'int_choice') {
    input = document.createElement('select');
    for (const choice of spec.choices ?? []) input.add(new Option(String(choice), String(choice)));
    const read = () => (spec.kind === 'int_choice' ? Number(input.value) : input.value);
    input.addEventListener('change', () => onChange(spec.name, read(), 'change'));
    input.setValue = (v) => { input.value = String(v); };
  } else if (spec.kind === 'bool') {
    wrap.classList.add('toggle');
    input = document.createElement('input');
    input.type = 'checkbox';
    input.addEventListener('change', () => onChange(spec.name, input.checked, 'change'));
    input.setValue = (v) => { input.checked = Boolean(v); };
    head.prepend(input);
  } else {  // int and face: a whole number (the face also takes 'all' from the face chips)
    input = document.createElement('input');
    input.type = 'number';
    input.inputMode = 'numeric';
    Object.assign(input, { min: spec.min ?? 0, max: spec.max ?? 99, step: 1 });
    if (spec.kind === 'face') input.placeholder = 'all';
    const read = () => (spec.kind === 'face' && input.value === '' ? 'all' : Number(input.value));
    input.addEventListener('change', () => onChange(spec.name, read(), 'change'));
    input.setValue = (v) => { input.value = v === 'all' ? '' : String(v); };
  }
  input.id = id;
  input.name = spec.name;
  if (spec.help) input.title = spec.help;
  input.setValue(value);
  if (spec.kind !== 'bool') wrap.append(input);
  if (spec.help) {
    const help = document.createElement('small');
    help.textContent = spec.help;
    wrap.append(help);
  }
  return { wrap, input };
}

/**
 * Build every control into `form`, grouped like the WebUI; returns a setter for values.
 * onChange(name, value, phase): phase 'input' while a slider moves, 'change' when it settles.
 */
export function buildControls(form, specs, values, onChange) {
  form.replaceChildren();
  const inputs = new Map();
  const groups = new Map();
  for (const spec of specs) {
    if (!groups.has(spec.group)) {
      const details = document.createElement('details');
      details.open = OPEN_GROUPS.has(spec.group);
      details.dataset.group = spec.group;
      const summary = document.createElement('summary');
      summary.textContent = GROUP_LABELS[spec.group] ?? spec.group;
      details.append(summary);
      form.append(details);
      groups.set(spec.group, details);
    }
    const { wrap, input } = field(spec, values[spec.name], onChange);
    groups.get(spec.group).append(wrap);
    inputs.set(spec.name, input);
  }
  return (name, value) => inputs.get(name)?.setValue(value);
}
