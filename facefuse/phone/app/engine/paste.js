// Paste: the template moved by the geometry field at full resolution plus the crop-space
// face change; pixels outside the changed region stay bit-for-bit (stages/paste.py).
import {composeAffine} from './align.js';

export function pasteBack(template, aligned, field, delta, region, contract) {
  const {change_eps: changeEps, region_eps: regionEps} = contract.constants;
  const size = aligned.size;
  let cx0 = Infinity; let cy0 = Infinity; let cx1 = -1; let cy1 = -1;
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const i = y * size + x;
      const moved = Math.hypot(field.mapX[i] - x, field.mapY[i] - y) > changeEps;
      if (moved || region.data[i] > regionEps) {
        if (x < cx0) cx0 = x; if (x > cx1) cx1 = x; if (y < cy0) cy0 = y; if (y > cy1) cy1 = y;
      }
    }
  }
  const out = {w: template.w, h: template.h, c: 3, data: Uint8ClampedArray.from(template.data)};
  if (cx1 < 0) return out;
  const T = aligned.toImage;
  const corners = [[cx0, cy0], [cx1 + 1, cy0], [cx0, cy1 + 1], [cx1 + 1, cy1 + 1]]
      .map(([x, y]) => [T[0][0] * x + T[0][1] * y + T[0][2], T[1][0] * x + T[1][1] * y + T[1][2]]);
  const x0 = Math.max(0, Math.floor(Math.min(...corners.map((p) => p[0]))) - 2);
  const y0 = Math.max(0, Math.floor(Math.min(...corners.map((p) => p[1]))) - 2);
  const x1 = Math.min(template.w, Math.ceil(Math.max(...corners.map((p) => p[0]))) + 2);
  const y1 = Math.min(template.h, Math.ceil(Math.max(...corners.map((p) => p[1]))) + 2);
  if (x1 <= x0 || y1 <= y0) return out;
  // ROI pixel -> crop coordinates.
  const M = composeAffine(aligned.toCrop, [[1, 0, x0], [0, 1, y0]]);
  const {w, data} = template;
  const px = (xx, yy, k) => data[(Math.min(Math.max(yy, 0), template.h - 1) * w + Math.min(Math.max(xx, 0), w - 1)) * 3 + k];
  for (let ry = 0; ry < y1 - y0; ry++) {
    for (let rx = 0; rx < x1 - x0; rx++) {
      const u = M[0][0] * rx + M[0][1] * ry + M[0][2]; const v = M[1][0] * rx + M[1][1] * ry + M[1][2];
      const u0 = Math.floor(u); const v0 = Math.floor(v);
      const ix = rx + x0; const iy = ry + y0;
      let sx = ix; let sy = iy; const d = [0, 0, 0];
      if (u0 >= 0 && v0 >= 0 && u0 + 1 <= size - 1 && v0 + 1 <= size - 1) {
        // The field and the change, bilinear in the crop; the field mapped to the image.
        const au = u - u0; const av = v - v0;
        const i00 = v0 * size + u0; const i01 = i00 + 1; const i10 = i00 + size; const i11 = i10 + 1;
        const w00 = (1 - au) * (1 - av); const w01 = au * (1 - av); const w10 = (1 - au) * av; const w11 = au * av;
        const fx = field.mapX[i00] * w00 + field.mapX[i01] * w01 + field.mapX[i10] * w10 + field.mapX[i11] * w11;
        const fy = field.mapY[i00] * w00 + field.mapY[i01] * w01 + field.mapY[i10] * w10 + field.mapY[i11] * w11;
        sx = T[0][0] * fx + T[0][1] * fy + T[0][2]; sy = T[1][0] * fx + T[1][1] * fy + T[1][2];
        for (let k = 0; k < 3; k++) {
          d[k] = delta.data[3 * i00 + k] * w00 + delta.data[3 * i01 + k] * w01 + delta.data[3 * i10 + k] * w10 + delta.data[3 * i11 + k] * w11;
        }
      } else if (u > -1 && v > -1 && u < size && v < size) {
        for (let k = 0; k < 3; k++) {
          let s = 0;
          for (const [du, dv] of [[0, 0], [1, 0], [0, 1], [1, 1]]) {
            const uu = u0 + du; const vv = v0 + dv;
            if (uu < 0 || vv < 0 || uu >= size || vv >= size) continue;
            s += delta.data[3 * (vv * size + uu) + k] * (du ? u - u0 : 1 - (u - u0)) * (dv ? v - v0 : 1 - (v - v0));
          }
          d[k] = s;
        }
      }
      const a0 = Math.floor(sx); const b0 = Math.floor(sy); const ax = sx - a0; const ay = sy - b0;
      const o = (iy * w + ix) * 3;
      for (let k = 0; k < 3; k++) {
        const val = (px(a0, b0, k) * (1 - ax) + px(a0 + 1, b0, k) * ax) * (1 - ay) +
          (px(a0, b0 + 1, k) * (1 - ax) + px(a0 + 1, b0 + 1, k) * ax) * ay;
        out.data[o + k] = Math.round(val + d[k]);
      }
    }
  }
  return out;
}
