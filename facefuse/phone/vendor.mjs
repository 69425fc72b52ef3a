// Copies the few runtime files the phone app needs from node_modules into
// facefuse/phone/app/vendor/ (committed), so `pip install` alone gives a working app and no
// Node is needed at run time. Run from the repository root: `npm ci && npm run vendor`.
// Bare import specifiers are rewritten to relative paths: the browser loads these files as
// plain ES modules with no bundler and no import map.
import {copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync} from 'node:fs';
import {dirname, join} from 'node:path';

const NODE = 'node_modules';
const VENDOR = 'facefuse/phone/app/vendor';

// [package file, vendor file, {bare specifier: relative path}]
const FILES = [
  // LiteRT.js: the landmark models and the refiner (the models themselves are served from
  // the installed mediapipe wheel and facefuse/models, not vendored). Only the compat build (SIMD128, no relaxed SIMD, no threads),
  // which every browser with WebAssembly SIMD runs.
  ['@litertjs/core/dist/index.js', 'litert/index.js',
    {'@litertjs/wasm-utils': './wasm-utils.js'}],
  ['@litertjs/wasm-utils/dist/index.js', 'litert/wasm-utils.js'],
  ['@litertjs/core/wasm/litert_wasm_compat_internal.js', 'litert/litert_wasm_compat_internal.js'],
  ['@litertjs/core/wasm/litert_wasm_compat_internal.wasm',
    'litert/litert_wasm_compat_internal.wasm'],
  // Delaunay triangulation for the warp (same triangles as scipy's on the same points).
  ['delaunator/index.js', 'delaunator/index.js',
    {'robust-predicates': './robust-predicates/orient2d.js'}],
  ['robust-predicates/esm/orient2d.js', 'delaunator/robust-predicates/orient2d.js'],
  ['robust-predicates/esm/util.js', 'delaunator/robust-predicates/util.js'],
  ['delaunator/LICENSE', 'delaunator/LICENSE'],
  ['robust-predicates/LICENSE', 'delaunator/robust-predicates/LICENSE'],
];

for (const sub of ['litert', 'delaunator']) {
  rmSync(join(VENDOR, sub), {recursive: true, force: true});
}
for (const [from, to, rewrites] of FILES) {
  const target = join(VENDOR, to);
  mkdirSync(dirname(target), {recursive: true});
  if (!rewrites) {
    copyFileSync(join(NODE, from), target);
    continue;
  }
  let text = readFileSync(join(NODE, from), 'utf8');
  for (const [bare, relative] of Object.entries(rewrites)) {
    text = text.replaceAll(`from "${bare}"`, `from "${relative}"`)
        .replaceAll(`from '${bare}'`, `from '${relative}'`);
  }
  writeFileSync(target, text);
}
console.log(`vendored ${FILES.length} files into ${VENDOR}`);
