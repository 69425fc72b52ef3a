// The one LiteRT.js runtime of a page or worker (loadLiteRt refuses a second load), shared
// by the refiner and the landmark models; every model runs on its CPU (XNNPACK, wasm).
import {getGlobalLiteRtPromise, loadAndCompile, loadLiteRt, Tensor} from '../vendor/litert/index.js';

/** Load the runtime once (from `base`'s vendor folder); later calls wait for the same load. */
export function litertReady(base) {
  const known = getGlobalLiteRtPromise();
  if (known) return known;
  const dir = new URL('vendor/litert/', base).href;
  // The wasm glue looks for its .wasm beside the running script unless told: in a Worker
  // that is the engine's folder, so say where it is (the glue reads self.Module once).
  globalThis.Module = {locateFile: (file) => dir + file};
  return loadLiteRt(dir + 'litert_wasm_compat_internal.js');
}

/** A compiled model from `url` on the CPU. */
export async function compileModel(base, url) {
  await litertReady(base);
  return loadAndCompile(url, {accelerator: 'wasm'});
}

/** Run `model` on one float32 NHWC input; returns its outputs as Float32Arrays (copies,
 * every tensor freed). */
export async function runModel(model, data, shape) {
  const input = new Tensor(data, shape);
  let outputs;
  try {
    outputs = await model.run([input]);
  } finally {
    input.delete();
  }
  const arrays = outputs.map((t) => t.toTypedArray());
  for (const t of outputs) t.delete();
  return arrays;
}

export {Tensor};
