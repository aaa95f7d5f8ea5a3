// Per-stage micro-benchmarks of the write and read path, one thread, best of 3 rounds:
//   node --import tsx bench/micro/stages.ts [--quick]
// chunker (keyed FastCDC), chunk id (HMAC-SHA256), AEAD seal/open (AES-256-GCM envelope),
// P+Q parity (RAID 6, 4+2), SQLite commit of write commands (rows/s) and the cost of the
// encrypted metadata database against a plain one.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Chunker, DEFAULT_CHUNKER, gearTable } from '../../src/chunks/cdc.ts';
import { chunkId, chunkIds, openChunk, openChunkJs, sealChunk, sealChunkJs, sealChunks, VolumeKeys } from '../../src/crypto/index.ts';
import { Metadata, ROOT_INO, S_IFREG } from '../../src/meta/metadata.ts';
import { computePQ } from '../../src/raid/gf.ts';

const QUICK = process.argv.includes('--quick');
const TOTAL = (QUICK ? 128 : 512) * 1024 * 1024;
const CHUNK = 64 * 1024;
const big = randomBytes(16 * 1024 * 1024);
const bufs = Array.from({ length: 64 }, () => randomBytes(CHUNK));
const rows: string[] = [];

function bestOf3(bytesPerRound: number, fn: () => void): number {
  fn();
  let best = 0;
  for (let r = 0; r < 3; r++) {
    const t0 = performance.now();
    fn();
    best = Math.max(best, bytesPerRound / 1e6 / ((performance.now() - t0) / 1000));
  }
  return best;
}

function line(name: string, v: number, unit: string): void {
  rows.push(`| ${name} | ${v.toFixed(0)} ${unit} |`);
}

const keys = VolumeKeys.derive(randomBytes(32), 'aes-256-gcm');
const per = TOTAL / 3;
// The C cut search (native/hoardfs_cdc.c) is what the write path uses; the JavaScript loop is its
// reference and fallback.
for (const [name, native] of [['chunker (keyed FastCDC 16/64/256 KiB, C)', true], ['chunker (same, JavaScript loop)', false]] as const) {
  const chunker = new Chunker(DEFAULT_CHUNKER, gearTable(keys.gearKey), native);
  line(name, bestOf3(Math.ceil(per / big.length) * big.length, () => {
    for (let k = 0; k < per / big.length; k++) chunker.split(big);
  }), 'MB/s');
}
const n = Math.ceil(per / CHUNK);
// What the ingest workers run: one C call for a piece's ids and one for its envelopes
// (native/hoardfs_aead.c); the per-chunk node:crypto calls are the reference and fallback.
const piece = Buffer.concat(bufs);
const offs = bufs.map((_, i) => i * CHUNK);
const lens = bufs.map(() => CHUNK);
const rounds = Math.ceil(n / 64);
line('chunk ids (HMAC-SHA256, 64 KiB chunks, C batch)', bestOf3(rounds * piece.length, () => {
  for (let r = 0; r < rounds; r++) chunkIds(keys, piece, offs, lens);
}), 'MB/s');
line('chunk id (same, node:crypto per chunk)', bestOf3(n * CHUNK, () => {
  for (let i = 0; i < n; i++) chunkId(keys, bufs[i % 64]!);
}), 'MB/s');
const ids = chunkIds(keys, piece, offs, lens);
line('AEAD seal (AES-256-GCM envelopes, 64 KiB chunks, C batch)', bestOf3(rounds * piece.length, () => {
  for (let r = 0; r < rounds; r++) sealChunks(keys, piece, offs, lens, ids);
}), 'MB/s');
const id = chunkId(keys, bufs[0]!);
line('AEAD seal (same, node:crypto per chunk)', bestOf3(n * CHUNK, () => {
  for (let i = 0; i < n; i++) sealChunkJs(keys, id, bufs[i % 64]!);
}), 'MB/s');
const env = sealChunk(keys, id, bufs[0]!);
line('AEAD open (64 KiB, C)', bestOf3(n * CHUNK, () => {
  for (let i = 0; i < n; i++) openChunk(keys, id, env);
}), 'MB/s');
line('AEAD open (same, node:crypto)', bestOf3(n * CHUNK, () => {
  for (let i = 0; i < n; i++) openChunkJs(keys, id, env);
}), 'MB/s');
{
  const strip = 64 * 1024;
  const d = Array.from({ length: 4 }, () => new Uint8Array(randomBytes(strip)));
  const p = new Uint8Array(strip);
  const q = new Uint8Array(strip);
  const m = Math.ceil(per / (4 * strip));
  for (const [name, native] of [['P+Q parity (RAID 6 4+2, 64 KiB strips; data bytes, C)', true], ['P+Q parity (same, JavaScript words)', false]] as const) {
    line(name, bestOf3(m * 4 * strip, () => {
      for (let i = 0; i < m; i++) computePQ(d, p, q, native);
    }), 'MB/s');
  }
}

// SQLite: write commands of 100 files x 16 extents each (one command = one transaction), plain
// and encrypted; rows = extents + chunks inserted.
function dbBench(hexKey: string | undefined, durable: boolean): number {
  const dir = mkdtempSync(join(tmpdir(), 'hoardfs-micro-'));
  try {
    const meta = Metadata.open(join(dir, 'meta.db'), { create: true, hexKey });
    const now = 1n;
    const inos: number[] = [];
    for (let i = 0; i < 100; i++) {
      inos.push(meta.apply<number>({ op: 'mknod', parent: ROOT_INO, name: Buffer.from(`f${i}`), mode: S_IFREG | 0o644, uid: 0, gid: 0, rdev: 0, now }));
    }
    let row = 0;
    let rowsDone = 0;
    const commits = QUICK ? 20 : 60;
    const t0 = performance.now();
    for (let c = 0; c < commits; c++) {
      const chunks = [];
      const files = [];
      for (const ino of inos) {
        const extents = [];
        for (let e = 0; e < 16; e++) {
          const hash = randomBytes(32);
          chunks.push({ hash, segment: row, off: e * 70000, storedLen: 70000, plainLen: 65536 });
          extents.push({ off: (c * 16 + e) * 65536, len: 65536, hash, chunkOff: 0 });
        }
        files.push({ ino, size: (c + 1) * 16 * 65536, mtime: now, extents });
      }
      meta.apply({ op: 'write', now, segments: [{ row, height: 4096, bytes: 16 * 70000 }], chunks, files }, durable);
      row++;
      rowsDone += chunks.length * 2;
    }
    const s = (performance.now() - t0) / 1000;
    meta.close();
    return rowsDone / s;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
const plain = dbBench(undefined, false);
const enc = dbBench(randomBytes(32).toString('hex'), false);
const encFull = dbBench(randomBytes(32).toString('hex'), true);
line('SQLite write commit, plain DB (3,200 rows/commit)', plain, 'rows/s');
line('SQLite write commit, encrypted DB', enc, 'rows/s');
line('SQLite write commit, encrypted DB, synchronous=FULL', encFull, 'rows/s');
rows.push(`| metadata encryption cost (plain / encrypted time) | ${(plain / enc).toFixed(2)}x |`);
process.stdout.write(`| stage | throughput |\n|---|---:|\n${rows.join('\n')}\n`);
