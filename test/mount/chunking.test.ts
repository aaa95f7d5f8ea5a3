// The chunk store's promises, checked through a real mount with the sizes the issue names.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { randomFillSync } from 'node:crypto';
import { join } from 'node:path';
import { hoardfs, makeVolume, type TestVolume } from '../helpers.ts';

let vol: TestVolume;
before(async () => {
  vol = await makeVolume(['--device-size', '4G'], { encrypted: false });
  await vol.mount();
});
after(async () => {
  await vol.cleanup();
});

async function stats(): Promise<{ chunks: number; storedBytes: number }> {
  const r = await hoardfs(['stats', vol.dir, '--json']);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
}

function writeRandom(path: string, bytes: number, prefix?: Buffer): void {
  const fd = fs.openSync(path, 'w');
  const piece = Buffer.alloc(16 << 20);
  let seed = 0;
  if (prefix) fs.writeSync(fd, prefix);
  for (let done = 0; done < bytes; done += piece.length) {
    // Reproducible content: the same stream for the same path length and size.
    piece.fill(0);
    piece.writeUInt32LE(seed++, 0);
    randomFillSync(piece, 4);
    fs.writeSync(fd, piece, 0, Math.min(piece.length, bytes - done));
  }
  fs.fsyncSync(fd);
  fs.closeSync(fd);
}

test('inserting 1 byte at the start of a 100 MiB file stores only a few new chunks', { timeout: 300_000 }, async () => {
  const a = join(vol.mnt, 'a');
  writeRandom(a, 100 << 20);
  const before = await stats();
  // A copy with one byte in front: content-defined boundaries resync after the first chunk.
  const src = fs.openSync(a, 'r');
  const dst = fs.openSync(join(vol.mnt, 'b'), 'w');
  fs.writeSync(dst, Buffer.from('!'));
  const buf = Buffer.alloc(1 << 20);
  for (let n; (n = fs.readSync(src, buf)) > 0; ) fs.writeSync(dst, buf, 0, n);
  fs.fsyncSync(dst);
  fs.closeSync(dst);
  fs.closeSync(src);
  const after = await stats();
  assert.ok(after.chunks - before.chunks <= 4, `new chunks: ${after.chunks - before.chunks}`);
  assert.ok(after.storedBytes - before.storedBytes < 1 << 20, `new bytes: ${after.storedBytes - before.storedBytes}`);
});

test('overwriting 4 KiB in the middle of a 1 GiB file stores a few KiB, never the file', { timeout: 600_000 }, async () => {
  const f = join(vol.mnt, 'big');
  writeRandom(f, 1 << 30);
  const before = await stats();
  const patch = Buffer.alloc(4096, 0x5a);
  const fd = fs.openSync(f, 'r+');
  fs.writeSync(fd, patch, 0, patch.length, (512 << 20) + 12345);
  fs.fsyncSync(fd);
  fs.closeSync(fd);
  const after = await stats();
  const grew = after.storedBytes - before.storedBytes;
  assert.ok(grew > 0 && grew <= 16384, `stored ${grew} new bytes for a 4 KiB write`);
  const back = Buffer.alloc(4096 + 2);
  const rfd = fs.openSync(f, 'r');
  fs.readSync(rfd, back, 0, back.length, (512 << 20) + 12344);
  fs.closeSync(rfd);
  assert.ok(back.subarray(1, 4097).equals(patch));
  assert.equal(fs.statSync(f).size, 1 << 30);
});
