// FusionParams in JS: the same names, kinds, ranges and messages as facefuse/params.py,
// read from contract.json (never restated here).
import {ParameterError} from './errors.js';

const pyNumber = (spec, v) => (spec.kind === 'float' && Number.isInteger(v) ? v.toFixed(1) : String(v));
const pyRepr = (v) => (typeof v === 'string' ? `'${v}'` : v === null || v === undefined ? 'None'
  : typeof v === 'boolean' ? (v ? 'True' : 'False') : String(v));

function validateOne(spec, value) {
  const {name, kind} = spec;
  if (kind === 'float') {
    if (typeof value !== 'number') throw new ParameterError(`${name} must be a number, got ${pyRepr(value)}`);
    if (!(spec.min <= value && value <= spec.max)) {
      throw new ParameterError(`${name} must be between ${pyNumber(spec, spec.min)} and ${pyNumber(spec, spec.max)}, got ${value}`);
    }
  } else if (kind === 'int' || kind === 'face') {
    if (kind === 'face' && value === 'all') return;
    if (typeof value !== 'number' || !Number.isInteger(value)) {
      const extra = kind === 'face' ? " or 'all'" : '';
      throw new ParameterError(`${name} must be a whole number${extra}, got ${pyRepr(value)}`);
    }
    if (!(spec.min <= value && value <= spec.max)) {
      throw new ParameterError(`${name} must be between ${spec.min} and ${spec.max}, got ${value}`);
    }
  } else if (kind === 'choice' || kind === 'int_choice') {
    if (!spec.choices.includes(value)) {
      throw new ParameterError(`${name} must be one of ${spec.choices.join(', ')}; got ${pyRepr(value)}`);
    }
  } else if (kind === 'bool' && typeof value !== 'boolean') {
    throw new ParameterError(`${name} must be true or false, got ${pyRepr(value)}`);
  }
}

/** A complete, validated parameter object: defaults, then `preset` (if named), then the
 * given values. Unknown names and out-of-range values are a ParameterError. */
export function validateParams(params, contract) {
  params = params || {};
  if (typeof params !== 'object') throw new ParameterError('params must be an object of FusionParams fields');
  const names = contract.params.map((p) => p.name);
  const {preset, ...given} = params;
  const unknown = Object.keys(given).filter((k) => !names.includes(k)).sort();
  if (unknown.length) {
    throw new ParameterError(`unknown parameter(s): ${unknown.join(', ')}; known: ${names.join(', ')}`);
  }
  const out = Object.fromEntries(contract.params.map((p) => [p.name, p.default]));
  if (preset !== undefined) {
    if (!(preset in contract.presets)) {
      throw new ParameterError(`unknown preset '${preset}'; choose one of ${Object.keys(contract.presets).join(', ')}`);
    }
    Object.assign(out, contract.presets[preset]);
  }
  Object.assign(out, given);
  for (const spec of contract.params) {
    validateOne(spec, out[spec.name]);
    if (spec.desktop_only && out[spec.name] !== spec.default) {
      throw new ParameterError(`${spec.name} is not available in the phone app yet (desktop only: facefuse fuse --${spec.name.replaceAll('_', '-')})`);
    }
  }
  return out;
}
