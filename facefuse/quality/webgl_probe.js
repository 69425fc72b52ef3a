// One frame's worth of the live view's pixel stages, in the engine's JavaScript and as WebGL2
// passes (webgl_probe.py says why); evaluated in a page that serves /engine/. A function
// expression: Playwright's page.evaluate(text, [photo, passes, runs]) calls it.
async ([photo, passes, runs]) => {
  const {warpNodes, halve, cellTable} = await import('/engine/livefuse.js');
  const {gaussianBlur} = await import('/engine/raster.js');
  const W = 640, H = 480, S = 320, HS = 160, n = 81, step = 4;
  // the frame: the photo drawn at 640x480 (RGBA), and the source crop: its centre (RGB)
  const bitmap = await createImageBitmap(new Blob([Uint8Array.from(atob(photo), (c) => c.charCodeAt(0))]));
  const c2d = new OffscreenCanvas(W, H).getContext('2d', {willReadFrequently: true});
  c2d.drawImage(bitmap, 0, 0, W, H);
  const rgba = c2d.getImageData(0, 0, W, H).data;
  const srcRgb = new Uint8ClampedArray(S * S * 3);
  for (let y = 0; y < S; y++) for (let x = 0; x < S; x++) for (let k = 0; k < 3; k++) srcRgb[(y * S + x) * 3 + k] = rgba[((y + 80) * W + x + 160) * 4 + k];
  // a field like a face's: a similarity (the crop is 1.4x the frame's pixels) plus a bend
  const field = (dx, dy) => { const f = {x: new Float64Array(n * n), y: new Float64Array(n * n)};
    for (let i = 0; i < n * n; i++) { const gx = (i % n) * step, gy = Math.floor(i / n) * step;
      f.x[i] = dx + 0.7 * gx + 0.05 * gy + 3 * Math.sin(gy / 40); f.y[i] = dy - 0.05 * gx + 0.7 * gy + 3 * Math.cos(gx / 50); }
    return f; };
  const tplNodes = field(200, 90), srcNodes = field(40, 40);
  const table = cellTable(S, n, step); const all = {x0: 0, y0: 0, x1: S, y1: S};
  const frameImg = {data: rgba, w: W, h: H, stride: 4}, srcImg = {data: srcRgb, w: S, h: S, stride: 3};
  const tpl = new Float32Array(S * S * 3), src = new Float32Array(S * S * 3), fused = new Float32Array(S * S * 3);
  const halfImg = () => ({w: 0, h: 0, c: 3, data: new Float32Array(HS * HS * 3)});
  const th = halfImg(), sh = halfImg();
  const jsFrame = () => {
    warpNodes(frameImg, tplNodes, table, n, S, all, tpl);
    warpNodes(srcImg, srcNodes, table, n, S, all, src);
    halve(tpl, S, 3, all, th); halve(src, S, 3, all, sh);
    let m = {w: HS, h: HS, c: 1, data: th.data.filter((_, i) => i % 3 === 0).map((v) => v / 255)}; // a mask's worth
    for (let p = 0; p < passes; p += 2) m = gaussianBlur(m, 1.5); // each call: two 13-tap passes
    for (let y = 0; y < S; y++) for (let x = 0; x < S; x++) {
      const w = m.data[(y >> 1) * HS + (x >> 1)]; const i = (y * S + x) * 3;
      for (let k = 0; k < 3; k++) fused[i + k] = tpl[i + k] + w * (src[i + k] - tpl[i + k]);
    }
  };
  // the same as WebGL2 passes (float targets; the node field read with texelFetch, exact)
  const gl = new OffscreenCanvas(S, S).getContext('webgl2');
  if (!gl || !gl.getExtension('EXT_color_buffer_float')) return {error: 'no WebGL2 with float targets'};
  const info = gl.getExtension('WEBGL_debug_renderer_info');
  const renderer = info ? gl.getParameter(info.UNMASKED_RENDERER_WEBGL) : gl.getParameter(gl.RENDERER);
  const VS = `#version 300 es
  void main() { vec2 p = vec2(float((gl_VertexID & 1) << 2) - 1.0, float((gl_VertexID & 2) << 1) - 1.0); gl_Position = vec4(p, 0.0, 1.0); }`;
  const WARP = `#version 300 es
  precision highp float; uniform sampler2D img; uniform highp sampler2D nodes; uniform vec2 isize; out vec4 o;
  void main() { // crop pixel -> node cell -> bilinear node position -> bilinear sample, border replicated
    vec2 p = vec2(gl_FragCoord.x - 0.5, float(${S}) - gl_FragCoord.y - 0.5);
    vec2 f = min(p / float(${step}), vec2(float(${n - 1}))); ivec2 c = ivec2(min(floor(f), vec2(float(${n - 2})))); vec2 a = f - vec2(c);
    vec2 q = mix(mix(texelFetch(nodes, c, 0).xy, texelFetch(nodes, c + ivec2(1, 0), 0).xy, a.x),
                 mix(texelFetch(nodes, c + ivec2(0, 1), 0).xy, texelFetch(nodes, c + ivec2(1, 1), 0).xy, a.x), a.y);
    // the taps by texelFetch (a GPU's bilinear filter may weigh them at 8 bits or less)
    vec2 b = floor(q); vec2 w = q - b; ivec2 hi = ivec2(isize) - 1; ivec2 i0 = clamp(ivec2(b), ivec2(0), hi); ivec2 i1 = clamp(ivec2(b) + 1, ivec2(0), hi);
    vec3 top = mix(texelFetch(img, i0, 0).rgb, texelFetch(img, ivec2(i1.x, i0.y), 0).rgb, w.x);
    vec3 bottom = mix(texelFetch(img, ivec2(i0.x, i1.y), 0).rgb, texelFetch(img, i1, 0).rgb, w.x);
    o = vec4(mix(top, bottom, w.y) * 255.0, 1.0); }`;
  const HALVE = `#version 300 es
  precision highp float; uniform sampler2D a; out vec4 o;
  void main() { ivec2 p = 2 * ivec2(gl_FragCoord.xy);
    o = 0.25 * (texelFetch(a, p, 0) + texelFetch(a, p + ivec2(1, 0), 0) + texelFetch(a, p + ivec2(0, 1), 0) + texelFetch(a, p + ivec2(1, 1), 0)); }`;
  const BLUR = `#version 300 es
  precision highp float; uniform sampler2D a; uniform ivec2 dir; out vec4 o;
  void main() { ivec2 p = ivec2(gl_FragCoord.xy); vec4 s = vec4(0.0); float t = 0.0;
    for (int k = -6; k <= 6; k++) { float w = exp(-float(k * k) / 4.5); s += w * texelFetch(a, clamp(p + k * dir, ivec2(0), ivec2(${HS - 1})), 0); t += w; }
    o = s / t; }`;
  const MIX = `#version 300 es
  precision highp float; uniform sampler2D t; uniform sampler2D s; uniform sampler2D m; out vec4 o;
  void main() { ivec2 p = ivec2(gl_FragCoord.xy); float w = texelFetch(m, p / 2, 0).r / 255.0;
    o = mix(texelFetch(t, p, 0), texelFetch(s, p, 0), w); }`;
  const program = (fs) => { const p = gl.createProgram();
    for (const [type, text] of [[gl.VERTEX_SHADER, VS], [gl.FRAGMENT_SHADER, fs]]) {
      const sh = gl.createShader(type); gl.shaderSource(sh, text); gl.compileShader(sh);
      if (!gl.getShaderParameter(sh, gl.COMPILE_STATUS)) throw new Error(gl.getShaderInfoLog(sh));
      gl.attachShader(p, sh); }
    gl.linkProgram(p); return p; };
  const texture = (w, h, ifmt, filter) => { const t = gl.createTexture(); gl.bindTexture(gl.TEXTURE_2D, t);
    gl.texStorage2D(gl.TEXTURE_2D, 1, ifmt, w, h);
    for (const [k, v] of [[gl.TEXTURE_MIN_FILTER, filter], [gl.TEXTURE_MAG_FILTER, filter], [gl.TEXTURE_WRAP_S, gl.CLAMP_TO_EDGE], [gl.TEXTURE_WRAP_T, gl.CLAMP_TO_EDGE]]) gl.texParameteri(gl.TEXTURE_2D, k, v);
    return {t, w, h}; };
  const target = (w, h, fmt = gl.RGBA32F) => { const t = texture(w, h, fmt, gl.NEAREST); t.fb = gl.createFramebuffer();
    gl.bindFramebuffer(gl.FRAMEBUFFER, t.fb); gl.framebufferTexture2D(gl.FRAMEBUFFER, gl.COLOR_ATTACHMENT0, gl.TEXTURE_2D, t.t, 0); return t; };
  const P = {warp: program(WARP), halve: program(HALVE), blur: program(BLUR), mix: program(MIX)};
  const frameT = texture(W, H, gl.RGBA8, gl.LINEAR), srcT = texture(S, S, gl.RGBA8, gl.LINEAR);
  const tplN = texture(n, n, gl.RG32F, gl.NEAREST), srcN = texture(n, n, gl.RG32F, gl.NEAREST);
  const T = target(S, S), Sx = target(S, S), F = target(S, S), t2 = target(HS, HS), s2 = target(HS, HS), m = [target(HS, HS, gl.R32F), target(HS, HS, gl.R32F)]; // masks: one channel
  const srcRgba = new Uint8Array(S * S * 4);
  for (let i = 0; i < S * S; i++) { srcRgba.set(srcRgb.subarray(3 * i, 3 * i + 3), 4 * i); srcRgba[4 * i + 3] = 255; }
  gl.bindTexture(gl.TEXTURE_2D, srcT.t); gl.texSubImage2D(gl.TEXTURE_2D, 0, 0, 0, S, S, gl.RGBA, gl.UNSIGNED_BYTE, srcRgba);
  const packed = (f) => { const d = new Float32Array(2 * n * n); for (let i = 0; i < n * n; i++) { d[2 * i] = f.x[i]; d[2 * i + 1] = f.y[i]; } return d; };
  const tplPacked = packed(tplNodes), srcPacked = packed(srcNodes);
  const half = new Float32Array(HS * HS * 4), change = new Float32Array(HS * HS * 4), crop = new Float32Array(S * S * 4);
  const draw = (p, out, inputs, set) => { gl.useProgram(p); gl.bindFramebuffer(gl.FRAMEBUFFER, out.fb); gl.viewport(0, 0, out.w, out.h);
    inputs.forEach(([name, t], i) => { gl.activeTexture(gl.TEXTURE0 + i); gl.bindTexture(gl.TEXTURE_2D, t.t); gl.uniform1i(gl.getUniformLocation(p, name), i); });
    set?.(); gl.drawArrays(gl.TRIANGLES, 0, 3); };
  const glFrame = () => {
    gl.bindTexture(gl.TEXTURE_2D, frameT.t); gl.texSubImage2D(gl.TEXTURE_2D, 0, 0, 0, W, H, gl.RGBA, gl.UNSIGNED_BYTE, rgba);
    gl.bindTexture(gl.TEXTURE_2D, tplN.t); gl.texSubImage2D(gl.TEXTURE_2D, 0, 0, 0, n, n, gl.RG, gl.FLOAT, tplPacked);
    gl.bindTexture(gl.TEXTURE_2D, srcN.t); gl.texSubImage2D(gl.TEXTURE_2D, 0, 0, 0, n, n, gl.RG, gl.FLOAT, srcPacked);
    draw(P.warp, T, [['img', frameT], ['nodes', tplN]], () => gl.uniform2f(gl.getUniformLocation(P.warp, 'isize'), W, H));
    draw(P.warp, Sx, [['img', srcT], ['nodes', srcN]], () => gl.uniform2f(gl.getUniformLocation(P.warp, 'isize'), S, S));
    draw(P.halve, t2, [['a', T]]); draw(P.halve, s2, [['a', Sx]]);
    for (let p = 0; p < passes; p++) draw(P.blur, m[(p + 1) % 2], [['a', p ? m[p % 2] : t2]], () => gl.uniform2i(gl.getUniformLocation(P.blur, 'dir'), p % 2, 1 - (p % 2)));
    draw(P.mix, F, [['t', T], ['s', Sx], ['m', m[passes % 2]]]);
    gl.bindFramebuffer(gl.FRAMEBUFFER, F.fb); // the U-Net's two inputs back to the CPU, its change up
    gl.readPixels(0, 0, HS, HS, gl.RGBA, gl.FLOAT, half);
    gl.bindFramebuffer(gl.FRAMEBUFFER, t2.fb); gl.readPixels(0, 0, HS, HS, gl.RGBA, gl.FLOAT, half);
    gl.bindTexture(gl.TEXTURE_2D, s2.t); gl.texSubImage2D(gl.TEXTURE_2D, 0, 0, 0, HS, HS, gl.RGBA, gl.FLOAT, change);
  };
  // the same work: the GL template crop against the JS one (rows flipped: GL's origin is the bottom)
  jsFrame(); glFrame();
  gl.bindFramebuffer(gl.FRAMEBUFFER, T.fb); gl.readPixels(0, 0, S, S, gl.RGBA, gl.FLOAT, crop);
  let maxDiff = 0;
  for (let y = 0; y < S; y++) for (let x = 0; x < S; x++) for (let k = 0; k < 3; k++) {
    maxDiff = Math.max(maxDiff, Math.abs(crop[((S - 1 - y) * S + x) * 4 + k] - tpl[(y * S + x) * 3 + k]));
  }
  const time = (f) => { for (let i = 0; i < 3; i++) f(); const ms = [];
    for (let i = 0; i < runs; i++) { const t0 = performance.now(); f(); ms.push(performance.now() - t0); } return ms; };
  const js = time(jsFrame); const webgl = time(glFrame);
  return {renderer, js, webgl, maxDiff};
}
