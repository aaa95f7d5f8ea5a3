import { hkdfSync } from 'node:crypto';
import { totalmem } from 'node:os';
import { argon2id as wasmArgon2id } from 'hash-wasm';

export interface KdfParams {
  type: 'argon2id';
  memoryKiB: number;
  passes: number;
  parallelism: number;
}

// Bounds shared by the header decoder and the env parser. The memory cap keeps a tampered header
// from making unlock try to allocate more than hash-wasm's 32-bit wasm memory can hold anyway.
export const KDF_LIMITS = {
  maxMemoryKiB: 2 * 1024 * 1024,
  maxPasses: 1000,
  maxParallelism: 64,
} as const;

export function validKdfParams(p: KdfParams): string | undefined {
  if (p.type !== 'argon2id') return `unsupported kdf type ${String(p.type)}`;
  const { memoryKiB: m, passes: t, parallelism: l } = p;
  if (!Number.isSafeInteger(l) || l < 1 || l > KDF_LIMITS.maxParallelism) return `argon2id parallelism ${l} out of range 1..${KDF_LIMITS.maxParallelism}`;
  if (!Number.isSafeInteger(t) || t < 1 || t > KDF_LIMITS.maxPasses) return `argon2id passes ${t} out of range 1..${KDF_LIMITS.maxPasses}`;
  // Argon2 needs at least 8 KiB per lane.
  if (!Number.isSafeInteger(m) || m < 8 * l || m > KDF_LIMITS.maxMemoryKiB) return `argon2id memory ${m} KiB out of range ${8 * l}..${KDF_LIMITS.maxMemoryKiB}`;
  return undefined;
}

const EMPTY = Buffer.alloc(0);

/**
 * HKDF-SHA256 with an empty salt: the input is already a uniformly random master key, so the
 * extract step needs no salt (RFC 5869 §3.1). `info` and `salt` accept bytes so the RFC test
 * vectors (non-UTF-8 info, non-empty salt) can be checked against this exact function.
 */
export function hkdf(ikm: Buffer, info: string | Uint8Array, length = 32, salt: Uint8Array = EMPTY): Buffer {
  const infoBytes = typeof info === 'string' ? Buffer.from(info, 'utf8') : info;
  return Buffer.from(hkdfSync('sha256', ikm, salt, infoBytes, length));
}

export async function argon2id(secret: Buffer, salt: Buffer, p: KdfParams, length = 32): Promise<Buffer> {
  const bad = validKdfParams(p);
  if (bad) throw new RangeError(bad);
  const out = await wasmArgon2id({
    password: secret,
    salt,
    iterations: p.passes,
    parallelism: p.parallelism,
    memorySize: p.memoryKiB,
    hashLength: length,
    outputType: 'binary',
  });
  return Buffer.from(out.buffer, out.byteOffset, out.byteLength);
}

/**
 * HOARDFS_KDF="memoryKiB,passes,parallelism" overrides calibration. Meant for tests and CI
 * ("64,1,1" costs well under a millisecond); never use a cheap setting for a real volume.
 */
export function kdfParamsFromEnv(): KdfParams | undefined {
  const raw = process.env.HOARDFS_KDF;
  if (raw === undefined || raw.trim() === '') return undefined;
  const parts = raw.split(',').map((s) => s.trim());
  if (parts.length !== 3 || !parts.every((s) => /^[0-9]{1,10}$/.test(s))) {
    throw new Error(`HOARDFS_KDF must be "memoryKiB,passes,parallelism" (e.g. "64,1,1"), got ${JSON.stringify(raw)}`);
  }
  const [m, t, l] = parts.map(Number) as [number, number, number];
  const p: KdfParams = { type: 'argon2id', memoryKiB: m, passes: t, parallelism: l };
  const bad = validKdfParams(p);
  if (bad) throw new Error(`HOARDFS_KDF: ${bad}`);
  return p;
}

const MiB = 1024;
const CALIBRATION_PARALLELISM = 4;
const MIN_PASSES = 2;
// Below this an offline attacker's cost per guess drops too far; OWASP's floor is 19 MiB, t=2.
const FLOOR_MEMORY_KiB = 32 * MiB;

async function timeArgon(p: KdfParams): Promise<number> {
  const salt = Buffer.alloc(16, 0x5a);
  const t0 = performance.now();
  await argon2id(Buffer.from('calibration'), salt, p);
  return performance.now() - t0;
}

/**
 * Chooses Argon2id parameters costing about `targetMs` on this machine.
 *
 * Memory first (RFC 9106 §4): memory-hardness is what hurts GPU/ASIC attackers, passes only add
 * time. So we use the largest memory (multiple of 8 MiB, <= maxMemoryKiB) that fits the budget with
 * MIN_PASSES passes, and only add passes once memory hits the cap. Parallelism is fixed at 4:
 * hash-wasm runs the lanes sequentially, so lanes cost us nothing extra, and a future multi-threaded
 * implementation (or a bigger machine) could unlock up to 4x faster with the same header.
 * Argon2 cost is linear in memory x passes (within ~7 % from 32 MiB to 1 GiB here), so small
 * probes predict the rest; one run at the chosen setting can only raise the estimate.
 */
export async function calibrateKdf(targetMs = 2000, maxMemoryKiB?: number): Promise<KdfParams> {
  const cap = Math.floor(
    Math.min(maxMemoryKiB ?? Math.min(1024 * MiB, totalmem() / 1024 / 4), KDF_LIMITS.maxMemoryKiB),
  );
  if (!(cap >= 8 * CALIBRATION_PARALLELISM)) throw new RangeError(`maxMemoryKiB ${maxMemoryKiB} too small`);
  const l = CALIBRATION_PARALLELISM;

  await timeArgon({ type: 'argon2id', memoryKiB: 64, passes: 1, parallelism: 1 }); // compile the wasm module
  // Other load on the machine only ever slows a run down, so the fastest observation is the best
  // estimate of what the hardware (and an attacker with the same hardware) can do. Using it biases
  // errors towards a slower unlock rather than towards weaker parameters.
  const probeMem = Math.min(cap, 32 * MiB);
  let kibPassesPerMs = 0;
  for (let i = 0; i < 3; i++) {
    const ms = await timeArgon({ type: 'argon2id', memoryKiB: probeMem, passes: 1, parallelism: l });
    kibPassesPerMs = Math.max(kibPassesPerMs, probeMem / Math.max(ms, 0.01));
  }

  const choose = (): KdfParams => {
    const budget = kibPassesPerMs * targetMs; // KiB x passes affordable within targetMs
    const step = cap >= 8 * MiB ? 8 * MiB : 8 * l;
    let m = Math.floor(budget / MIN_PASSES / step) * step;
    m = Math.max(Math.min(m, cap), Math.min(FLOOR_MEMORY_KiB, cap), 8 * l);
    const t = Math.max(MIN_PASSES, Math.min(KDF_LIMITS.maxPasses, Math.floor(budget / m)));
    return { type: 'argon2id', memoryKiB: m, passes: t, parallelism: l };
  };

  let p = choose();
  // One run at full size catches the case where the small probes were the disturbed ones.
  const ms = await timeArgon(p);
  const rate = (p.memoryKiB * p.passes) / Math.max(ms, 0.01);
  if (rate > kibPassesPerMs * 1.15) {
    kibPassesPerMs = rate;
    p = choose();
  }
  return p;
}
