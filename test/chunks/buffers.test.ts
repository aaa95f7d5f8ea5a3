// Batch buffers are used again only when nothing can still look at them: not while a read that
// captured a batch's ranges is running, never twice at once, and never one the pool did not lend.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { SharedBuffers } from '../../src/chunks/store.ts';
import { createVolume, Volume } from '../../src/volume/volume.ts';
import { ROOT_INO } from '../../src/meta/metadata.ts';
import type { Ctx, FsOps } from '../../src/fs/types.ts';
import { randomData, tempDir } from '../helpers.ts';

test('a buffer given back is used again, at the length asked for', () => {
  const p = new SharedBuffers();
  const a = p.take(3 << 20);
  assert.ok(a.buffer instanceof SharedArrayBuffer);
  assert.equal(a.length, 3 << 20);
  p.give(a);
  const b = p.take((3 << 20) - 5);
  assert.equal(b.buffer, a.buffer, 'same memory');
  assert.equal(b.length, (3 << 20) - 5);
});

test('a read running when a buffer came back keeps it from being used again until it ends', () => {
  const p = new SharedBuffers();
  const a = p.take(1 << 20);
  const before = p.readStart();
  p.give(a);
  const after = p.readStart(); // started after the give: cannot have seen the buffer
  assert.notEqual(p.take(1 << 20).buffer, a.buffer, 'reused under a running read');
  p.readEnd(before);
  const c = p.take(1 << 20);
  assert.equal(c.buffer, a.buffer, 'a later read does not hold it back');
  p.readEnd(after);
});

test('a buffer given back twice is lent once; one the pool did not lend is ignored', () => {
  const p = new SharedBuffers();
  const a = p.take(1 << 20);
  p.give(a);
  p.give(a.subarray(100)); // another view of the same memory
  p.give(Buffer.from(new SharedArrayBuffer(1 << 20)));
  const x = p.take(1 << 20);
  const y = p.take(1 << 20);
  assert.equal(x.buffer, a.buffer);
  assert.notEqual(y.buffer, a.buffer);
});

test('assemble puts the parts back to back', () => {
  const p = new SharedBuffers();
  const parts = [randomData(5, 1), randomData(70000, 2), Buffer.alloc(0), randomData(3, 3)];
  const out = p.assemble(parts, 70008);
  assert.deepEqual(Buffer.from(out), Buffer.concat(parts));
});

test('reads of a file being written return its bytes while batches come and go (buffers recycled)', async () => {
  const t = tempDir();
  const dir = join(t.path, 'vol');
  // A fresh Buffer each time: a secret is wiped once used.
  const secret = () => ({ secret: Buffer.from('p'), kind: 'passphrase' as const });
  await createVolume({ dir, cipher: 'aes-256-gcm', secret: secret(), devices: [join(t.path, 'd0.img')], layout: { level: 0, devices: 1 }, deviceSize: 512 << 20 });
  const v = await Volume.open({ dir, lock: true, getSecret: async () => secret(), fs: { flushIntervalMs: 0, dirtyLimit: 2 << 20 } });
  const fs = v.fs as unknown as FsOps;
  const ctx: Ctx = { uid: 0, gid: 0, pid: 1, umask: 0o022 };
  try {
    const data = randomData(48 << 20, 9);
    const { entry, open } = await fs.create(ROOT_INO, Buffer.from('f'), 0o644, 2, ctx);
    const ino = entry.attr.ino;
    let written = 0;
    const reads: Promise<void>[] = [];
    let checked = 0;
    for (let off = 0; off < data.length; off += 1 << 20) {
      await fs.write(ino, open.fh, data.subarray(off, off + (1 << 20)), off, 0);
      written = off + (1 << 20);
      // Reads of what was just written and of older parts, not awaited: they overlap batches.
      for (const at of [written - (1 << 20), Math.floor(written / 3), 0]) {
        const len = Math.min(300000, written - at);
        reads.push(
          Promise.resolve(fs.read(ino, open.fh, len, at)).then((got) => {
            assert.ok(got.equals(data.subarray(at, at + len)), `bytes at ${at} while ${written} written`);
            checked++;
          }),
        );
      }
    }
    await Promise.all(reads);
    assert.equal(checked, 3 * 48);
    await fs.release(ino, open.fh);
    await v.close();
    const again = await Volume.open({ dir, lock: true, getSecret: async () => secret() });
    try {
      const f = again.fs as unknown as FsOps;
      assert.ok((await f.read(ino, 0, data.length, 0)).equals(data), 'bytes after remount');
    } finally {
      await again.close();
    }
  } finally {
    t.cleanup();
  }
});
