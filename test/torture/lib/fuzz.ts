// Fuzzing the parsers of every on-disk structure with random and mutated inputs: no crash, no
// hang, and only the parser's own clean failure (null, or its error class).
import { randomBytes, createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../../helpers.ts';
import { decodeKeyHeader, encodeKeyHeader, newKeyHeader, HeaderError, IntegrityError, VolumeKeys, chunkId, sealChunk, openChunk } from '../../../src/crypto/index.ts';
import { decodeSuperblock, encodeSuperblock, type Superblock } from '../../../src/raid/superblock.ts';
import { decodeManifest, encodeManifest, headerArea } from '../../../src/volume/snapshot.ts';
import { readConfig, VolumeError } from '../../../src/volume/config.ts';
import { Rng } from './rng.ts';

export interface FuzzResult {
  inputs: number;
  problems: string[];
}

/** A mutation of a valid input: byte flips, runs, truncation, extension, splices. */
function mutate(r: Rng, base: Buffer): Buffer {
  let b = Buffer.from(base);
  const k = r.int(1, 4);
  for (let i = 0; i < k; i++) {
    const what = r.int(0, 5);
    if (what === 0 && b.length) b[r.int(0, b.length - 1)] ^= 1 << r.int(0, 7);
    else if (what === 1 && b.length) b[r.int(0, b.length - 1)] = r.pick([0, 0xff, 0x7f, 0x80, 1]);
    else if (what === 2) b = b.subarray(0, r.int(0, b.length));
    else if (what === 3) b = Buffer.concat([b, r.bytes(r.int(1, 64))]);
    else if (what === 4 && b.length > 8) {
      const at = r.int(0, b.length - 8);
      b.writeUInt32LE(r.pick([0, 0xffffffff, 0x7fffffff, r.int(0, 2 ** 32 - 1)]), at);
    } else if (b.length) {
      const at = r.int(0, b.length - 1);
      r.bytes(Math.min(b.length - at, r.int(1, 32))).copy(b, at);
    }
  }
  return b;
}

function check(problems: string[], what: string, input: Buffer | string, f: () => void, ok: (e: unknown) => boolean): void {
  const t = performance.now();
  try {
    f();
  } catch (e) {
    if (!ok(e)) problems.push(`${what}: input ${createHash('sha256').update(input).digest('hex').slice(0, 12)} (${input.length} bytes) threw ${(e as Error)?.constructor?.name}: ${(e as Error)?.message}`);
  }
  const ms = performance.now() - t;
  if (ms > 2000) problems.push(`${what}: one input took ${ms.toFixed(0)} ms`);
}

export function fuzzParsers(seed: number, perParser: number, o: { keyHeader?: number } = {}): FuzzResult {
  const r = new Rng(seed);
  const res: FuzzResult = { inputs: 0, problems: [] };
  const P = res.problems;

  // Device superblock: a parser that returns null for anything it does not accept.
  const sb: Superblock = {
    generation: 7,
    volumeId: randomBytes(16),
    deviceId: randomBytes(16),
    slot: 1,
    layout: { level: 6, mirrors: 2, devices: 4, groupSize: 4, stripSize: 65536 },
    rows: 1000,
    dataStart: 17 << 20,
    members: Array.from({ length: 4 }, () => ({ deviceId: randomBytes(16), state: 'ONLINE' as const, cursor: -1 })),
    spares: [randomBytes(16)],
  };
  const sbBuf = encodeSuperblock(sb);
  const resum = (b: Buffer) => {
    // Fix the checksum so the mutation reaches the fields behind it.
    if (b.length >= 4096) createHash('sha256').update(b.subarray(0, 4096 - 32)).digest().copy(b, 4096 - 32);
    return b;
  };
  for (let i = 0; i < perParser; i++, res.inputs++) {
    const input = i % 10 === 0 ? r.bytes(r.int(0, 8192)) : i % 2 ? resum(mutate(r, sbBuf)) : mutate(r, sbBuf);
    check(P, 'decodeSuperblock', input, () => {
      const s = decodeSuperblock(input);
      if (s && (!Number.isSafeInteger(s.generation) || !Number.isSafeInteger(s.rows))) P.push(`decodeSuperblock accepted absurd numbers: generation ${s.generation}, rows ${s.rows}`);
    }, () => false);
  }

  // Key header: HeaderError only.
  const { header, masterKey } = newKeyHeader(randomBytes(16), 'none');
  const hdr = encodeKeyHeader(header);
  const nHeader = o.keyHeader ?? perParser;
  for (let i = 0; i < nHeader; i++, res.inputs++) {
    let input: Buffer;
    if (i % 10 === 0) input = r.bytes(r.int(0, 5000));
    else {
      // Mutate the first 8 KiB (where every field but the slot material lives) of a full copy.
      input = Buffer.from(hdr);
      const head = mutate(r, hdr.subarray(0, 8192));
      if (head.length < 8192 && r.chance(0.5)) input = Buffer.concat([head]);
      else head.copy(input, 0, 0, Math.min(head.length, 8192));
    }
    check(P, 'decodeKeyHeader', input, () => decodeKeyHeader(input), (e) => e instanceof HeaderError);
  }

  // Chunk envelope: IntegrityError only, for both ciphers.
  for (const cipher of ['aes-256-gcm', 'none'] as const) {
    const keys = VolumeKeys.derive(masterKey.length === 32 ? masterKey : randomBytes(32), cipher);
    const plain = r.bytes(3000);
    const id = chunkId(keys, plain);
    const env = sealChunk(keys, id, plain);
    for (let i = 0; i < perParser / 2; i++, res.inputs++) {
      const input = i % 10 === 0 ? r.bytes(r.int(0, 5000)) : mutate(r, env);
      const useId = i % 7 === 0 ? mutate(r, id).subarray(0, 32) : id;
      check(P, `openChunk(${cipher})`, input, () => {
        const out = openChunk(keys, useId.length === 32 ? useId : id, input);
        if (!out.equals(plain) && useId === id) P.push(`openChunk(${cipher}) returned wrong bytes for a mutated envelope`);
      }, (e) => e instanceof IntegrityError);
    }
  }

  // Snapshot manifest: null for anything not intact.
  {
    const keys = VolumeKeys.derive(randomBytes(32), 'aes-256-gcm');
    const blob = encodeManifest(keys, { generation: 3, createdAt: new Date(0).toISOString(), dbBytes: 4096, pieces: [{ row: 1, height: 4096, storedLen: 100, plainLen: 90, hash: 'ab'.repeat(32) }] });
    const area = headerArea(header, blob);
    const tail = area.subarray(hdr.length);
    for (let i = 0; i < perParser; i++, res.inputs++) {
      const t = i % 10 === 0 ? r.bytes(r.int(0, 600)) : mutate(r, tail);
      const input = Buffer.concat([hdr, t]);
      check(P, 'decodeManifest', t, () => {
        const m = decodeManifest(keys, input);
        if (m && m.generation !== 3) P.push('decodeManifest accepted a changed manifest');
      }, () => false);
    }
  }

  // hoardfs.json: VolumeError only.
  const t = tempDir('hoardfs-fuzz-');
  try {
    const good = Buffer.from(
      JSON.stringify({ format: 'hoardfs-volume', version: 1, volumeId: 'ab'.repeat(16), cipher: 'none', layout: { level: 0, devices: 1, stripSize: 65536 }, devices: ['dev0.img'], spares: [], chunker: { min: 16384, avg: 65536, max: 262144 }, createdAt: 'x' }, null, 2),
    );
    const jsonish = ['null', '[]', '{}', '1', '"x"', '{"format":"hoardfs-volume","version":1}', '{"__proto__":{"format":"hoardfs-volume"}}'];
    for (let i = 0; i < perParser; i++, res.inputs++) {
      const input = i % 20 === 0 ? Buffer.from(r.pick(jsonish)) : i % 10 === 0 ? r.bytes(r.int(0, 300)) : i % 3 === 0 ? Buffer.from(jsonMutate(r, good.toString())) : mutate(r, good);
      fs.writeFileSync(join(t.path, 'hoardfs.json'), input);
      check(P, 'readConfig', input, () => readConfig(t.path), (e) => e instanceof VolumeError);
    }
  } finally {
    t.cleanup();
  }
  return res;
}

/** Structure-aware mutation: replace one JSON value by a value of another type. */
function jsonMutate(r: Rng, text: string): string {
  const v = JSON.parse(text) as Record<string, unknown>;
  const keys = ['format', 'version', 'volumeId', 'cipher', 'layout', 'devices', 'spares', 'chunker', 'createdAt'];
  const k = r.pick(keys);
  const weird = [null, 0, -1, 1e308, 'x', '', [], {}, [null], [''], ['../../etc/passwd'], true, { level: 'x' }, { min: 0, avg: 0, max: 0 }, { min: 1.5, avg: 2, max: 3 }];
  v[k] = r.pick(weird);
  return JSON.stringify(v);
}
