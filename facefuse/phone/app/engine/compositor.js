// The live view's last step on the GPU (issue #16): the camera frame, and over it the fused
// face, drawn with WebGL2 onto the view's canvas. The Worker sends the frame's pixels, the
// template's warp field (how far it moves each grid node, in frame pixels) and the fused
// crop's change over the template; one fragment shader does what the CPU paste did per
// frame pixel: the field between its nodes (bilinear: the texture unit's filter), the frame
// sampled there (bilinear, border replicated) plus the change sampled in the crop
// (bilinear). On a phone that is GPU work; on headless
// Chromium's SwiftShader it runs in the GPU process, off the page's and the Worker's
// threads. The album path's fallback frames (occlusion, registration) come as a finished
// RGBA patch and are drawn the same way.
import {BackendError} from './errors.js';

const VERTEX = `#version 300 es
void main() {
  // one triangle over the whole canvas
  vec2 p = vec2(float((gl_VertexID & 1) << 2) - 1.0, float((gl_VertexID & 2) << 1) - 1.0);
  gl_Position = vec4(p, 0.0, 1.0);
}`;

const FRAGMENT = `#version 300 es
precision highp float;
precision highp int;
uniform sampler2D frame;       // the camera frame, RGBA8, linear, clamped
uniform sampler2D shifts;      // how far the field moves its n x n nodes, frame pixels, RG16F
uniform sampler2D change;      // the fused crop minus the template over deltaBox, RGB16F
uniform sampler2D pixels;      // a finished RGBA patch (mode 2)
uniform int mode;              // 0: the frame, 1: the field and the change, 2: the patch
uniform vec2 size;             // the frame's width and height
uniform mat3x2 toCrop;         // frame pixel -> crop pixel
uniform vec4 box;              // where the crop changes: x0, y0, x1, y1 (crop pixels, ends out)
uniform vec4 deltaBox;         // the change texture's place in the crop: x0, y0, w, h
uniform vec4 patchBox;         // the patch's place in the frame: x0, y0, w, h
uniform float crop;            // the crop's side S
uniform int n;                 // nodes a side
out vec4 colour;

void main() {
  // the frame pixel (row 0 at the top), as the CPU code indexes it
  vec2 p = vec2(gl_FragCoord.x - 0.5, size.y - gl_FragCoord.y - 0.5);
  ivec2 ip = ivec2(p);
  colour = texelFetch(frame, ip, 0);
  if (mode == 2) {
    vec2 q = p - patchBox.xy;
    if (q.x >= 0.0 && q.y >= 0.0 && q.x < patchBox.z && q.y < patchBox.w) colour = texelFetch(pixels, ivec2(q), 0);
    return;
  }
  if (mode != 1) return;
  vec2 uv = toCrop * vec3(p, 1.0);
  if (uv.x < 0.0 || uv.y < 0.0 || uv.x >= crop - 1.0 || uv.y >= crop - 1.0) return;
  if (uv.x < box.x || uv.y < box.y || uv.x >= box.z || uv.y >= box.w) return;
  // the field: the frame pixel itself plus the nodes' shifts, bilinear between them
  vec2 s = p + texture(shifts, (uv * float(n - 1) / crop + 0.5) / float(n)).xy;
  vec3 moved = texture(frame, (s + 0.5) / size).rgb;
  vec3 d = texture(change, (uv - deltaBox.xy + 0.5) / deltaBox.zw).rgb;
  colour = vec4(moved + d / 255.0, 1.0);
}`;

function compile(gl, type, text) {
  const shader = gl.createShader(type);
  gl.shaderSource(shader, text);
  gl.compileShader(shader);
  if (!gl.getShaderParameter(shader, gl.COMPILE_STATUS)) throw new BackendError(`live view shader: ${gl.getShaderInfoLog(shader)}`);
  return shader;
}

/** A texture with `filter` (gl.LINEAR or gl.NEAREST), clamped at its edges. */
function texture(gl, filter) {
  const t = gl.createTexture();
  gl.bindTexture(gl.TEXTURE_2D, t);
  gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, filter);
  gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAG_FILTER, filter);
  gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_S, gl.CLAMP_TO_EDGE);
  gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_T, gl.CLAMP_TO_EDGE);
  return t;
}

/** Draws live frames onto `canvas` (its WebGL2 context). A lost context (a phone takes it
 * back from a page in the background, say) skips frames until the browser restores it,
 * then the program and textures are made again. */
export class LiveCompositor {
  constructor(canvas) {
    const gl = canvas.getContext('webgl2', {alpha: false, antialias: false, depth: false, preserveDrawingBuffer: false});
    if (!gl) throw new BackendError('the live view needs WebGL2, which this browser does not offer');
    this.canvas = canvas; this.gl = gl; this.lost = false;
    this.onLost = (e) => { e.preventDefault(); this.lost = true; }; // preventDefault: ask for it back
    this.onRestored = () => { this.setup(); this.lost = false; };
    canvas.addEventListener('webglcontextlost', this.onLost);
    canvas.addEventListener('webglcontextrestored', this.onRestored);
    this.setup();
  }

  /** The program, its textures and their units (again after a lost context). */
  setup() {
    const {gl} = this;
    const program = gl.createProgram();
    gl.attachShader(program, compile(gl, gl.VERTEX_SHADER, VERTEX));
    gl.attachShader(program, compile(gl, gl.FRAGMENT_SHADER, FRAGMENT));
    gl.linkProgram(program);
    if (!gl.getProgramParameter(program, gl.LINK_STATUS)) throw new BackendError(`live view shader: ${gl.getProgramInfoLog(program)}`);
    gl.useProgram(program);
    this.program = program;
    const locations = new Map(); // looked up once per program
    this.uniform = (name) => {
      if (!locations.has(name)) locations.set(name, gl.getUniformLocation(program, name));
      return locations.get(name);
    };
    this.textures = {frame: texture(gl, gl.LINEAR), shifts: texture(gl, gl.LINEAR),
      change: texture(gl, gl.LINEAR), pixels: texture(gl, gl.NEAREST)};
    ['frame', 'shifts', 'change', 'pixels'].forEach((name, unit) => gl.uniform1i(this.uniform(name), unit));
    gl.pixelStorei(gl.UNPACK_ALIGNMENT, 1);
  }

  upload(unit, name, internal, w, h, format, type, data) {
    const gl = this.gl;
    gl.activeTexture(gl.TEXTURE0 + unit);
    gl.bindTexture(gl.TEXTURE_2D, this.textures[name]);
    gl.texImage2D(gl.TEXTURE_2D, 0, internal, w, h, 0, format, type, data);
  }

  /** Draw one answer of the live session: `frame` {data RGBA, w, h}, and `warp` (the field
   * and the change) or `patch` (finished RGBA pixels), or neither (no face). */
  draw({frame, warp, patch}) {
    const {gl, canvas} = this;
    if (this.lost) return;
    if (canvas.width !== frame.w || canvas.height !== frame.h) { canvas.width = frame.w; canvas.height = frame.h; }
    gl.viewport(0, 0, frame.w, frame.h);
    this.upload(0, 'frame', gl.RGBA8, frame.w, frame.h, gl.RGBA, gl.UNSIGNED_BYTE, frame.data);
    gl.uniform2f(this.uniform('size'), frame.w, frame.h);
    let mode = 0;
    if (warp) {
      mode = 1;
      const {n, crop, toCrop: C, box, change} = warp;
      this.upload(1, 'shifts', gl.RG16F, n, n, gl.RG, gl.FLOAT, warp.shifts);
      this.upload(2, 'change', gl.RGB16F, change.w, change.h, gl.RGB, gl.FLOAT, change.data);
      gl.uniformMatrix3x2fv(this.uniform('toCrop'), false, [C[0][0], C[1][0], C[0][1], C[1][1], C[0][2], C[1][2]]);
      gl.uniform4f(this.uniform('box'), box.x0, box.y0, box.x1 + 1, box.y1 + 1);
      gl.uniform4f(this.uniform('deltaBox'), change.x0, change.y0, change.w, change.h);
      gl.uniform1f(this.uniform('crop'), crop);
      gl.uniform1i(this.uniform('n'), n);
    } else if (patch) {
      mode = 2;
      this.upload(3, 'pixels', gl.RGBA8, patch.w, patch.h, gl.RGBA, gl.UNSIGNED_BYTE, patch.data);
      gl.uniform4f(this.uniform('patchBox'), patch.x0, patch.y0, patch.w, patch.h);
    }
    gl.uniform1i(this.uniform('mode'), mode);
    gl.drawArrays(gl.TRIANGLES, 0, 3);
  }

  /** Free the program and textures (the canvas keeps its context for the next view). */
  release() {
    const {gl, canvas} = this;
    canvas.removeEventListener('webglcontextlost', this.onLost);
    canvas.removeEventListener('webglcontextrestored', this.onRestored);
    if (this.lost) return; // nothing left to free
    for (const t of Object.values(this.textures)) gl.deleteTexture(t);
    gl.deleteProgram(this.program);
  }

  /** What draw() put on the canvas, as RGB rows from the top (read back at once: the
   * canvas keeps no drawing buffer once shown). */
  pixels(answer) {
    if (this.lost) throw new BackendError('the live view lost its WebGL context for now: the browser gives it back by itself');
    this.draw(answer);
    const {gl} = this; const {w, h} = answer.frame;
    const rgba = new Uint8Array(w * h * 4);
    gl.readPixels(0, 0, w, h, gl.RGBA, gl.UNSIGNED_BYTE, rgba);
    const rgb = new Uint8ClampedArray(w * h * 3);
    for (let y = 0; y < h; y++) {
      for (let x = 0, i = (h - 1 - y) * w * 4, o = y * w * 3; x < w; x++, i += 4, o += 3) {
        rgb[o] = rgba[i]; rgb[o + 1] = rgba[i + 1]; rgb[o + 2] = rgba[i + 2];
      }
    }
    return rgb;
  }
}
