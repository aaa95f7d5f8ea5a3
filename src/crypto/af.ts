import { createHash, randomBytes } from 'node:crypto';

// LUKS anti-forensic splitter (Fruhwirth, "TKS1"; cryptsetup lib/luks1/af.c) with SHA-256.
// The key material is expanded into `stripes` blocks such that every bit of every block is needed
// to recover it. A slot on a disk that remaps sectors is therefore destroyed when any one of its
// ~125 KiB lands in a wiped sector, instead of needing all 32 bytes of a plain wrapped key wiped.

const DIGEST = 32;

/** LUKS "diffuse": block j of the buffer becomes SHA-256(be32(j) || block_j), last block truncated. */
function diffuse(buf: Buffer): void {
  const iv = Buffer.alloc(4);
  for (let off = 0, j = 0; off < buf.length; off += DIGEST, j++) {
    const end = Math.min(off + DIGEST, buf.length);
    iv.writeUInt32BE(j, 0);
    const h = createHash('sha256').update(iv).update(buf.subarray(off, end)).digest();
    h.copy(buf, off, 0, end - off);
  }
}

function xorInto(dst: Buffer, src: Buffer): void {
  for (let i = 0; i < dst.length; i++) dst[i]! ^= src[i]!;
}

function checkArgs(stripes: number, keyLength: number): void {
  if (!Number.isSafeInteger(stripes) || stripes < 1 || stripes > 65536) throw new RangeError(`AF stripes ${stripes} out of range 1..65536`);
  if (!Number.isSafeInteger(keyLength) || keyLength < 1 || keyLength > 4096) throw new RangeError(`AF key length ${keyLength} out of range 1..4096`);
}

export function afSplit(material: Buffer, stripes: number): Buffer {
  const n = material.length;
  checkArgs(stripes, n);
  const out = randomBytes(n * stripes); // stripes 0..stripes-2 are random; the last is computed
  const d = Buffer.alloc(n);
  for (let i = 0; i < stripes - 1; i++) {
    xorInto(d, out.subarray(i * n, (i + 1) * n));
    diffuse(d);
  }
  const last = out.subarray((stripes - 1) * n);
  for (let k = 0; k < n; k++) last[k] = d[k]! ^ material[k]!;
  d.fill(0);
  return out;
}

export function afMerge(split: Buffer, stripes: number, keyLength: number): Buffer {
  checkArgs(stripes, keyLength);
  if (split.length !== stripes * keyLength) {
    throw new RangeError(`AF split material is ${split.length} bytes, expected ${stripes} x ${keyLength}`);
  }
  const d = Buffer.alloc(keyLength);
  for (let i = 0; i < stripes - 1; i++) {
    xorInto(d, split.subarray(i * keyLength, (i + 1) * keyLength));
    diffuse(d);
  }
  xorInto(d, split.subarray((stripes - 1) * keyLength));
  return d;
}
