// GF(2^8) arithmetic and the RAID-6 P/Q syndromes, in the convention of Linux md lib/raid6 and
// ISA-L: field polynomial x^8+x^4+x^3+x^2+1 (0x11D), generator {02}, Q = sum g^i * D_i with i the
// data strip index inside its parity group. Sticking to that convention means a strip set written
// here can be checked with md's or ISA-L's math (and their published test vectors).
import { loadAddon } from '../addons.ts';

type NativePQ = (strips: Uint8Array[], p: Uint8Array, q: Uint8Array | null) => void;
type ReadCached = (fd: number, buf: Uint8Array, pos: number) => number;
let nativePQ: NativePQ | null | undefined;
let readCached: ReadCached | null | undefined;

const loadGf = () => loadAddon<{ pq: NativePQ; readCached: ReadCached }>('hoardfs_gf');

/** preadv2(RWF_NOWAIT) from the same addon (used by src/raid/device.ts), or null. */
export function nativeReadCached(): ReadCached | null {
  if (readCached === undefined) readCached = loadGf()?.readCached ?? null;
  return readCached;
}

/**
 * P+Q in C (native/hoardfs_gf.c), or null: HOARDFS_GF=js forces the JavaScript loops below, and
 * without a built addon they are used too. Both give the same bytes.
 */
export function nativeParity(): NativePQ | null {
  if (nativePQ !== undefined) return nativePQ;
  nativePQ = process.env.HOARDFS_GF === 'js' ? null : (loadGf()?.pq ?? null);
  return nativePQ;
}

const EXP = new Uint8Array(512);
const LOG = new Uint8Array(256);
{
  let x = 1;
  for (let i = 0; i < 255; i++) {
    EXP[i] = x;
    LOG[x] = i;
    x <<= 1;
    if (x & 0x100) x ^= 0x11d;
  }
  // Doubling the table lets gfMul skip the "mod 255" on LOG[a] + LOG[b].
  for (let i = 255; i < 512; i++) EXP[i] = EXP[i - 255];
}

// Full 64 KiB product table: region multiply-by-constant (the recovery slow path) becomes one
// lookup per byte with the row for the constant hoisted out of the loop.
const MUL = new Uint8Array(65536);
for (let a = 1; a < 256; a++) for (let b = 1; b < 256; b++) MUL[(a << 8) | b] = EXP[LOG[a] + LOG[b]];

function checkByte(v: number, name: string): void {
  if (!Number.isInteger(v) || v < 0 || v > 255) throw new RangeError(`${name} must be a byte (0..255), got ${v}`);
}

export function gfMul(a: number, b: number): number {
  checkByte(a, 'a');
  checkByte(b, 'b');
  return MUL[(a << 8) | b];
}

export function gfInv(a: number): number {
  checkByte(a, 'a');
  if (a === 0) throw new RangeError('0 has no inverse in GF(2^8)');
  return EXP[255 - LOG[a]];
}

export function gfDiv(a: number, b: number): number {
  return gfMul(a, gfInv(b));
}

/** g^i for the generator {02}; i may be any integer (the group has order 255). */
export function gfPow2(i: number): number {
  return EXP[((i % 255) + 255) % 255];
}

function words(b: Uint8Array): Uint32Array | null {
  if (b.byteOffset & 3 || b.length & 3) return null;
  return new Uint32Array(b.buffer, b.byteOffset, b.length >>> 2);
}

/**
 * P = XOR of the strips, Q = RS syndrome (q may be null for RAID 5). All buffers must have the
 * same length. Word-parallel when every buffer is 4-byte aligned: four GF bytes are doubled at
 * once with the mask trick, which is what makes this fast enough in plain JS (no SIMD).
 */
export function computePQ(strips: Uint8Array[], p: Uint8Array, q: Uint8Array | null, useNative = true): void {
  const len = p.length;
  for (const s of strips) if (s.length !== len) throw new RangeError('computePQ: strips differ in length');
  if (q && q.length !== len) throw new RangeError('computePQ: q length differs');
  const n = strips.length;
  if (n === 0) {
    p.fill(0);
    q?.fill(0);
    return;
  }
  const native = useNative ? nativeParity() : null;
  if (native && n <= 256) {
    native(strips, p, q);
    return;
  }
  const P = words(p);
  const Q = q ? words(q) : null;
  const D = strips.map(words);
  if (P && (!q || Q) && D.every((d) => d !== null)) {
    pqWords(D as Uint32Array[], P, Q);
    return;
  }
  pqBytes(strips, p, q);
}

function pqWords(D: Uint32Array[], P: Uint32Array, Q: Uint32Array | null): void {
  const n = D.length;
  const w = P.length;
  const last = D[n - 1];
  // The output may alias nothing else, but must not be read before it is initialised.
  P.set(last);
  if (!Q) {
    let i = n - 2;
    for (; i >= 1; i -= 2) {
      const d1 = D[i];
      const d0 = D[i - 1];
      for (let k = 0; k < w; k++) P[k] ^= d1[k] ^ d0[k];
    }
    if (i === 0) {
      const d = D[0];
      for (let k = 0; k < w; k++) P[k] ^= d[k];
    }
    return;
  }
  Q.set(last);
  // Horner's rule from the highest index down: Q = ((D_{n-1}·g + D_{n-2})·g + ...) + D_0.
  // Two strips per pass halves the number of times P and Q stream through memory.
  let i = n - 2;
  for (; i >= 1; i -= 2) {
    const d1 = D[i];
    const d0 = D[i - 1];
    for (let k = 0; k < w; k++) {
      const a = d1[k];
      const b = d0[k];
      let v = Q[k];
      v = ((v & 0x7f7f7f7f) << 1) ^ (((v >>> 7) & 0x01010101) * 0x1d) ^ a;
      v = ((v & 0x7f7f7f7f) << 1) ^ (((v >>> 7) & 0x01010101) * 0x1d) ^ b;
      Q[k] = v;
      P[k] ^= a ^ b;
    }
  }
  if (i === 0) {
    const d = D[0];
    for (let k = 0; k < w; k++) {
      const a = d[k];
      const v = Q[k];
      Q[k] = ((v & 0x7f7f7f7f) << 1) ^ (((v >>> 7) & 0x01010101) * 0x1d) ^ a;
      P[k] ^= a;
    }
  }
}

function pqBytes(D: Uint8Array[], p: Uint8Array, q: Uint8Array | null): void {
  const n = D.length;
  const len = p.length;
  p.set(D[n - 1]);
  if (q) q.set(D[n - 1]);
  for (let i = n - 2; i >= 0; i--) {
    const d = D[i];
    for (let k = 0; k < len; k++) {
      p[k] ^= d[k];
      if (q) q[k] = MUL[0x200 | q[k]] ^ d[k];
    }
  }
}

/** dst ^= src (same length); word-parallel when aligned. */
export function xorInto(dst: Uint8Array, src: Uint8Array): void {
  const a = words(dst);
  const b = words(src);
  if (a && b) {
    for (let k = 0; k < a.length; k++) a[k] ^= b[k];
    return;
  }
  for (let k = 0; k < dst.length; k++) dst[k] ^= src[k];
}

/** dst = c · src over GF(2^8). */
export function mulRegion(c: number, src: Uint8Array, dst: Uint8Array): void {
  const base = c << 8;
  for (let k = 0; k < src.length; k++) dst[k] = MUL[base | src[k]];
}

/**
 * Fills the erased members of one parity group in place. `data[i] === null` marks an erased data
 * strip, `p`/`q` null an erased (or, for RAID 5, absent) syndrome. Returns false when more is
 * erased than the syndromes can recover. This is md's raid6 recovery: data+P from Q
 * (raid6_datap_recov), data+data from P and Q (raid6_2data_recov), anything with P alone from XOR.
 */
export function solveGroup(
  data: (Uint8Array | null)[],
  p: Uint8Array | null,
  q: Uint8Array | null,
  len: number,
  wantP: boolean,
  wantQ: boolean,
): { data: Uint8Array[]; p: Uint8Array | null; q: Uint8Array | null } | null {
  const erased: number[] = [];
  for (let i = 0; i < data.length; i++) if (!data[i]) erased.push(i);
  const out = data.slice();
  if (erased.length === 1 && p) {
    const x = erased[0];
    const d = new Uint8Array(len);
    d.set(p);
    for (let i = 0; i < data.length; i++) if (i !== x) xorInto(d, data[i]!);
    out[x] = d;
  } else if (erased.length === 1 && q) {
    const x = erased[0];
    // Q ^ Q(with D_x = 0) = g^x · D_x
    const zero = new Uint8Array(len);
    const qx = new Uint8Array(len);
    const scratchP = new Uint8Array(len);
    computePQ(data.map((d) => d ?? zero), scratchP, qx);
    xorInto(qx, q);
    const d = new Uint8Array(len);
    mulRegion(gfPow2(-x), qx, d);
    out[x] = d;
  } else if (erased.length === 2 && p && q) {
    const [x, y] = erased;
    const zero = new Uint8Array(len);
    const pxy = new Uint8Array(len);
    const qxy = new Uint8Array(len);
    computePQ(data.map((d) => d ?? zero), pxy, qxy);
    xorInto(pxy, p); // = D_x ^ D_y
    xorInto(qxy, q); // = g^x D_x ^ g^y D_y
    // D_x = (g^y·Pxy ^ Qxy) / (g^x ^ g^y) = A·Pxy ^ B·Qxy
    const denom = gfInv(gfPow2(x) ^ gfPow2(y));
    const A = MUL[(gfPow2(y) << 8) | denom];
    const B = denom;
    const dx = new Uint8Array(len);
    const rowA = A << 8;
    const rowB = B << 8;
    for (let k = 0; k < len; k++) dx[k] = MUL[rowA | pxy[k]] ^ MUL[rowB | qxy[k]];
    xorInto(pxy, dx); // D_y = Pxy ^ D_x
    out[x] = dx;
    out[y] = pxy;
  } else if (erased.length > 0) {
    return null;
  }
  const full = out as Uint8Array[];
  let rp = p;
  let rq = q;
  if ((wantP && !p) || (wantQ && !q)) {
    const np = new Uint8Array(len);
    const nq = wantQ ? new Uint8Array(len) : null;
    computePQ(full, np, nq);
    if (wantP && !p) rp = np;
    if (wantQ && !q) rq = nq;
  }
  return { data: full, p: rp, q: rq };
}
