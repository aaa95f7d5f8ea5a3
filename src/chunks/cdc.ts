// Content-defined chunking: FastCDC (Xia et al., USENIX ATC '16) with normalized chunking and a
// keyed gear table. Keying the table from a volume secret means an observer of chunk lengths
// cannot precompute where a known file would be cut (the 2025 restic/borg fingerprinting attack);
// padding the stored lengths (crypto layer) hides the rest.
import { createHmac } from 'node:crypto';
import { loadAddon } from '../addons.ts';

type NativeCut = (data: Uint8Array, start: number, end: number, final: boolean, gear: Uint32Array, min: number, avg: number, max: number, maskS: number, maskL: number) => number;

type NativeCopy = (dst: Uint8Array, dstOff: number, src: Uint8Array) => void;

let nativeCut: NativeCut | null | undefined;
let nativeCopy: NativeCopy | null | undefined;

const loadCdc = () => loadAddon<{ cut: NativeCut; copy: NativeCopy }>('hoardfs_cdc');

/** memcpy from the same addon (a copy into shared memory at memory speed), or null. */
export function nativeCopier(): NativeCopy | null {
  if (nativeCopy === undefined) nativeCopy = loadCdc()?.copy ?? null;
  return nativeCopy;
}

/**
 * The C cut search (native/hoardfs_cdc.c), or null: HOARDFS_CDC=js forces the JavaScript loop, and
 * without a built addon that loop is used too. Both give the same cuts.
 */
export function nativeCutter(): NativeCut | null {
  if (nativeCut !== undefined) return nativeCut;
  nativeCut = process.env.HOARDFS_CDC === 'js' ? null : (loadCdc()?.cut ?? null);
  return nativeCut;
}

export interface ChunkerParams {
  min: number;
  avg: number;
  max: number;
}

export const DEFAULT_CHUNKER: ChunkerParams = { min: 16 * 1024, avg: 64 * 1024, max: 256 * 1024 };

export function validateChunkerParams(p: ChunkerParams): void {
  const pow2 = (n: number) => Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;
  if (!pow2(p.avg)) throw new Error(`average chunk size must be a power of two, got ${p.avg}`);
  if (!(p.min >= 64 && p.min < p.avg && p.avg < p.max)) {
    throw new Error(`chunk sizes must satisfy 64 <= min < avg < max, got ${p.min}/${p.avg}/${p.max}`);
  }
  if (p.max > 4 * 1024 * 1024) throw new Error(`maximum chunk size is 4 MiB, got ${p.max}`);
}

/** 256 pseudo-random 32-bit words derived from the key (HMAC-SHA256 in counter mode). */
export function gearTable(key: Buffer): Uint32Array {
  const table = new Uint32Array(256);
  for (let block = 0; block < 32; block++) {
    const out = createHmac('sha256', key).update(`gear ${block}`).digest();
    for (let i = 0; i < 8; i++) table[block * 8 + i] = out.readUInt32LE(i * 4);
  }
  return table;
}

// Masks take their bits from the top of the 32-bit hash: the low bits of a gear hash only depend
// on the last few bytes, so the top bits are the ones that see the whole 32-byte window.
function topMask(bits: number): number {
  return bits <= 0 ? 0 : ((0xffffffff << (32 - bits)) >>> 0) | 0;
}

export class Chunker {
  private readonly maskS: number;
  private readonly maskL: number;
  private readonly native: NativeCut | null;

  constructor(
    readonly params: ChunkerParams,
    private readonly gear: Uint32Array,
    useNative = true,
  ) {
    validateChunkerParams(params);
    const bits = Math.log2(params.avg);
    // Normalization level 2, as in the FastCDC paper: stricter before the average, looser after.
    this.maskS = topMask(bits + 2);
    this.maskL = topMask(bits - 2);
    this.native = useNative ? nativeCutter() : null;
  }

  /**
   * Length of the first chunk of data[start, end). When `final` is false and no cut point was
   * found before `end`, returns 0: the caller must supply more data (or declare it final).
   */
  next(data: Uint8Array, start: number, end: number, final: boolean): number {
    const { min, avg, max } = this.params;
    const n = end - start;
    if (n <= min) return final ? n : 0;
    if (this.native) return this.native(data, start, end, final, this.gear, min, avg, max, this.maskS >>> 0, this.maskL >>> 0);
    // Absolute indices keep the hot loops to one load, one shift-add and one test per byte.
    const limit = start + Math.min(n, max);
    const normal = start + Math.min(n, avg);
    const gear = this.gear;
    const maskS = this.maskS;
    const maskL = this.maskL;
    let h = 0;
    let i = start + min;
    // Cut-point skipping: bytes before `min` cannot end a chunk, but the hash window (32 bytes)
    // must be warm when we start testing, so start hashing 32 bytes early.
    for (let j = Math.max(start, i - 32); j < i; j++) h = ((h << 1) + gear[data[j]]) | 0;
    for (; i < normal; i++) {
      h = ((h << 1) + gear[data[i]]) | 0;
      if ((h & maskS) === 0) return i + 1 - start;
    }
    for (; i < limit; i++) {
      h = ((h << 1) + gear[data[i]]) | 0;
      if ((h & maskL) === 0) return i + 1 - start;
    }
    if (limit - start === max) return max;
    return final ? n : 0;
  }

  /** Cuts data[0, length) completely; returns chunk lengths. */
  split(data: Uint8Array, final = true): number[] {
    const out: number[] = [];
    let pos = 0;
    while (pos < data.length) {
      const len = this.next(data, pos, data.length, final);
      if (len === 0) break;
      out.push(len);
      pos += len;
    }
    return out;
  }
}
