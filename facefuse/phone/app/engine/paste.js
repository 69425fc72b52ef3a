// Paste: the template moved by the geometry field at full resolution plus the crop-space
// face change; pixels outside the changed region stay bit-for-bit (stages/paste.py).
import {composeAffine} from './align.js';

/** The template with the face pasted in ({w, h, c, data} uint8 RGB); `changed`: the box
 * {x0, y0, x1, y1} outside which it equals the template (absent when nothing changed). */
export function pasteBack(template, aligned, field, delta, region, contract) {
  const {change_eps: changeEps, region_eps: regionEps} = contract.constants;
  const size = aligned.size;
  let cx0 = Infinity; let cy0 = Infinity; let cx1 = -1; let cy1 = -1;
  const eps2 = changeEps * changeEps;
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const i = y * size + x;
      const dx = field.mapX[i] - x; const dy = field.mapY[i] - y;
      if (dx * dx + dy * dy > eps2 || region.data[i] > regionEps) {
        if (x < cx0) cx0 = x; if (x > cx1) cx1 = x; if (y < cy0) cy0 = y; if (y > cy1) cy1 = y;
      }
    }
  }
  const out = {w: template.w, h: template.h, c: 3, data: template.data.slice()};
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
  const H = template.h;
  const D = delta.data; const mapX = field.mapX; const mapY = field.mapY; const o8 = out.data;
  for (let ry = 0; ry < y1 - y0; ry++) {
    for (let rx = 0; rx < x1 - x0; rx++) {
      const u = M[0][0] * rx + M[0][1] * ry + M[0][2]; const v = M[1][0] * rx + M[1][1] * ry + M[1][2];
      const u0 = Math.floor(u); const v0 = Math.floor(v);
      const ix = rx + x0; const iy = ry + y0;
      let sx = ix; let sy = iy; let d0 = 0; let d1 = 0; let d2 = 0;
      if (u0 >= 0 && v0 >= 0 && u0 + 1 <= size - 1 && v0 + 1 <= size - 1) {
        // The field and the change, bilinear in the crop; the field mapped to the image.
        const au = u - u0; const av = v - v0;
        const i00 = v0 * size + u0; const i01 = i00 + 1; const i10 = i00 + size; const i11 = i10 + 1;
        const w00 = (1 - au) * (1 - av); const w01 = au * (1 - av); const w10 = (1 - au) * av; const w11 = au * av;
        const fx = mapX[i00] * w00 + mapX[i01] * w01 + mapX[i10] * w10 + mapX[i11] * w11;
        const fy = mapY[i00] * w00 + mapY[i01] * w01 + mapY[i10] * w10 + mapY[i11] * w11;
        sx = T[0][0] * fx + T[0][1] * fy + T[0][2]; sy = T[1][0] * fx + T[1][1] * fy + T[1][2];
        const a = 3 * i00; const b = 3 * i01; const c = 3 * i10; const e = 3 * i11;
        d0 = D[a] * w00 + D[b] * w01 + D[c] * w10 + D[e] * w11;
        d1 = D[a + 1] * w00 + D[b + 1] * w01 + D[c + 1] * w10 + D[e + 1] * w11;
        d2 = D[a + 2] * w00 + D[b + 2] * w01 + D[c + 2] * w10 + D[e + 2] * w11;
      } else if (u > -1 && v > -1 && u < size && v < size) {
        // At the crop's edge: the taps inside it only (the change is zero beyond).
        for (let dv = 0; dv < 2; dv++) {
          for (let du = 0; du < 2; du++) {
            const uu = u0 + du; const vv = v0 + dv;
            if (uu < 0 || vv < 0 || uu >= size || vv >= size) continue;
            const wt = (du ? u - u0 : 1 - (u - u0)) * (dv ? v - v0 : 1 - (v - v0));
            const q = 3 * (vv * size + uu);
            d0 += D[q] * wt; d1 += D[q + 1] * wt; d2 += D[q + 2] * wt;
          }
        }
      }
      // The template resampled at (sx, sy), bilinear, its border replicated.
      const a0 = Math.floor(sx); const b0 = Math.floor(sy); const ax = sx - a0; const ay = sy - b0;
      const xa = (a0 < 0 ? 0 : a0 >= w ? w - 1 : a0) * 3; const xb = (a0 + 1 < 0 ? 0 : a0 + 1 >= w ? w - 1 : a0 + 1) * 3;
      const ya = (b0 < 0 ? 0 : b0 >= H ? H - 1 : b0) * w * 3; const yb = (b0 + 1 < 0 ? 0 : b0 + 1 >= H ? H - 1 : b0 + 1) * w * 3;
      const o = (iy * w + ix) * 3;
      const p00 = ya + xa; const p01 = ya + xb; const p10 = yb + xa; const p11 = yb + xb;
      const w00 = (1 - ax) * (1 - ay); const w01 = ax * (1 - ay); const w10 = (1 - ax) * ay; const w11 = ax * ay;
      o8[o] = Math.round(data[p00] * w00 + data[p01] * w01 + data[p10] * w10 + data[p11] * w11 + d0);
      o8[o + 1] = Math.round(data[p00 + 1] * w00 + data[p01 + 1] * w01 + data[p10 + 1] * w10 + data[p11 + 1] * w11 + d1);
      o8[o + 2] = Math.round(data[p00 + 2] * w00 + data[p01 + 2] * w01 + data[p10 + 2] * w10 + data[p11 + 2] * w11 + d2);
    }
  }
  out.changed = {x0, y0, x1, y1}; // the only pixels that may differ from the template
  return out;
}
