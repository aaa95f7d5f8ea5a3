// The filesystem layer in-process (no FUSE): data paths, dedup, extents, refcounts, errnos.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { closeSync, openSync, readSync, writeFileSync, writeSync } from 'node:fs';
import { createVolume, Volume } from '../../src/volume/volume.ts';
import { buildGeometry, dataStartFor, normalizeLayout, rowMap } from '../../src/raid/layout.ts';
import { FsError, type Ctx, type FsOps } from '../../src/fs/types.ts';

const F = (v: Volume): FsOps => v.fs;
import { ROOT_INO } from '../../src/meta/metadata.ts';
import { randomData, tempDir } from '../helpers.ts';

const ctx: Ctx = { uid: 0, gid: 0, pid: 1, umask: 0o022 };
const name = (s: string) => Buffer.from(s);

async function withVolume(fn: (v: Volume, dir: string) => Promise<void>, o: { level?: 0 | 1 | 5 | 6; devices?: number } = {}) {
  const t = tempDir();
  const dir = join(t.path, 'vol');
  const devices = Array.from({ length: o.devices ?? 1 }, (_, i) => join(t.path, `d${i}.img`));
  await createVolume({ dir, cipher: 'none', devices, layout: { level: o.level ?? 0, devices: devices.length }, deviceSize: 256 * 1024 * 1024 });
  let v = await Volume.open({ dir, lock: true, fs: { flushIntervalMs: 0 } });
  try {
    await fn(v, dir);
  } finally {
    await v.close().catch(() => {});
    t.cleanup();
  }
  void v;
}

async function writeFile(v: Volume, parent: number, n: string, data: Buffer, chunk = 1 << 20): Promise<number> {
  const { entry, open } = await F(v).create(parent, name(n), 0o644, 1, ctx);
  for (let off = 0; off < data.length; off += chunk) await F(v).write(entry.attr.ino, open.fh, data.subarray(off, off + chunk), off, 0);
  await F(v).release(entry.attr.ino, open.fh);
  return entry.attr.ino;
}

async function readAll(v: Volume, ino: number): Promise<Buffer> {
  const a = await F(v).getattr(ino, undefined, ctx);
  return F(v).read(ino, 0, a.size, 0);
}

/**
 * A one-device volume whose device goes through fault rules (empty at open); fn sets the rules
 * with setFaults. The volume is closed and removed afterwards.
 */
async function withFaultyVolume(fsOptions: { dirtyLimit?: number }, fn: (v: Volume, setFaults: (rules: object[]) => void) => Promise<void>): Promise<void> {
  const t = tempDir();
  const dir = join(t.path, 'vol');
  const rules = join(t.path, 'faults.json');
  await createVolume({ dir, cipher: 'none', devices: [join(t.path, 'd0.img')], layout: { level: 0, devices: 1 }, deviceSize: 256 * 1024 * 1024 });
  writeFileSync(rules, '[]');
  process.env.HOARDFS_FAULTS = rules;
  const v = await Volume.open({ dir, lock: true, fs: { flushIntervalMs: 0, ...fsOptions } });
  delete process.env.HOARDFS_FAULTS;
  try {
    await fn(v, (r) => writeFileSync(rules, JSON.stringify(r)));
  } finally {
    await v.close().catch(() => {});
    t.cleanup();
  }
}

test('write, flush and read back through the chunk store', async () => {
  await withVolume(async (v) => {
    const data = randomData(3 * 1024 * 1024 + 17, 7);
    const ino = await writeFile(v, ROOT_INO, 'f', data);
    assert.deepEqual(await readAll(v, ino), data, 'reads buffered data');
    await v.fs.sync();
    v.store.dropCache();
    assert.deepEqual(await readAll(v, ino), data, 'reads stored data');
    const s = v.meta.stats();
    assert.equal(s.referencedBytes, data.length);
    assert.ok(s.chunks > 10, `content-defined chunks: ${s.chunks}`);
  });
});

test('identical data in two files is stored once', async () => {
  await withVolume(async (v) => {
    const data = randomData(4 * 1024 * 1024, 3);
    await writeFile(v, ROOT_INO, 'a', data);
    await v.fs.sync();
    const before = v.meta.stats().storedBytes;
    await writeFile(v, ROOT_INO, 'b', data);
    await v.fs.sync();
    assert.equal(v.meta.stats().storedBytes, before, 'second copy stores no new bytes');
  });
});

test('a 1-byte insert at the start resyncs chunk boundaries', async () => {
  await withVolume(async (v) => {
    const data = randomData(8 * 1024 * 1024, 11);
    await writeFile(v, ROOT_INO, 'a', data);
    await v.fs.sync();
    const before = v.meta.stats();
    await writeFile(v, ROOT_INO, 'b', Buffer.concat([Buffer.from('x'), data]));
    await v.fs.sync();
    const after = v.meta.stats();
    assert.ok(after.chunks - before.chunks <= 3, `new chunks: ${after.chunks - before.chunks}`);
  });
});

test('a 4 KiB overwrite in the middle of a big file stores only about 4 KiB', async () => {
  await withVolume(async (v) => {
    const data = randomData(16 * 1024 * 1024, 5);
    const ino = await writeFile(v, ROOT_INO, 'big', data);
    await v.fs.sync();
    const before = v.meta.stats().storedBytes;
    const { fh } = await F(v).open(ino, 2, ctx);
    const patch = randomData(4096, 99);
    await F(v).write(ino, fh, patch, 8 * 1024 * 1024 + 123, 0);
    await F(v).fsync(ino, fh, false);
    await F(v).release(ino, fh);
    const grew = v.meta.stats().storedBytes - before;
    assert.ok(grew <= 8192, `stored ${grew} new bytes`);
    patch.copy(data, 8 * 1024 * 1024 + 123);
    v.store.dropCache();
    assert.deepEqual(await readAll(v, ino), data);
  });
});

test('holes cost nothing and read as zeros; truncate both ways', async () => {
  await withVolume(async (v) => {
    const { entry, open } = await F(v).create(ROOT_INO, name('sparse'), 0o644, 2, ctx);
    const ino = entry.attr.ino;
    await F(v).write(ino, open.fh, Buffer.from('end'), 5 * 1024 ** 3, 0);
    await F(v).fsync(ino, open.fh, false);
    assert.equal((await F(v).getattr(ino, undefined, ctx)).size, 5 * 1024 ** 3 + 3);
    assert.ok(v.meta.stats().storedBytes < 4096);
    const mid = await F(v).read(ino, open.fh, 4096, 1024 ** 3);
    assert.deepEqual(mid, Buffer.alloc(4096));
    await F(v).setattr(ino, { size: 10 }, undefined, ctx);
    assert.equal((await F(v).getattr(ino, undefined, ctx)).size, 10);
    await F(v).setattr(ino, { size: 20 }, undefined, ctx);
    assert.deepEqual(await F(v).read(ino, open.fh, 100, 0), Buffer.alloc(20));
    await F(v).release(ino, open.fh);
  });
});

test('refcounts stay exact through overwrite, unlink and gc', async () => {
  await withVolume(async (v) => {
    const data = randomData(2 * 1024 * 1024, 21);
    const a = await writeFile(v, ROOT_INO, 'a', data);
    await writeFile(v, ROOT_INO, 'b', data);
    await v.fs.sync();
    const { fh } = await F(v).open(a, 2, ctx);
    await F(v).write(a, fh, randomData(100_000, 8), 500_000, 0);
    await F(v).release(a, fh);
    await v.fs.sync();
    assert.deepEqual(v.meta.check(false).problems, []);
    await F(v).unlink(ROOT_INO, name('a'), ctx);
    await F(v).unlink(ROOT_INO, name('b'), ctx);
    assert.deepEqual(v.meta.check(false).problems, []);
    const r = await v.gc();
    assert.ok(r.chunks > 0);
    const s = v.meta.stats();
    assert.equal(s.chunks, 0);
    assert.equal(s.segments, 0, 'emptied rows are released');
  });
});

test('unlink of an open file keeps it readable until release', async () => {
  await withVolume(async (v) => {
    const data = randomData(300_000, 4);
    const ino = await writeFile(v, ROOT_INO, 'f', data);
    await v.fs.sync();
    const { fh } = await F(v).open(ino, 2, ctx);
    await F(v).unlink(ROOT_INO, name('f'), ctx);
    await assert.rejects(async () => F(v).lookup(ROOT_INO, name('f'), ctx), (e: FsError) => e.code === 'ENOENT');
    assert.deepEqual(await F(v).read(ino, fh, data.length, 0), data);
    await F(v).write(ino, fh, Buffer.from('more'), data.length, 0);
    await F(v).release(ino, fh);
    await v.fs.sync();
    assert.equal(v.meta.inode(ino), undefined, 'purged after the last close');
    assert.deepEqual(v.meta.check(false).problems, []);
  });
});

test('errnos: EEXIST, ENOENT, ENOTEMPTY, ENOTDIR, EISDIR, ENAMETOOLONG, EINVAL', async () => {
  await withVolume(async (v) => {
    const d = await F(v).mkdir(ROOT_INO, name('d'), 0o755, ctx);
    await writeFile(v, d.attr.ino, 'x', Buffer.from('x'));
    // An answer may come at once or through a promise, and so may an errno.
    const code = async (f: () => unknown) => Promise.resolve().then(f).then(() => 'ok', (e: FsError) => e.code);
    assert.equal(await code(() => F(v).mkdir(ROOT_INO, name('d'), 0o755, ctx)), 'EEXIST');
    assert.equal(await code(() => F(v).lookup(ROOT_INO, name('nope'), ctx)), 'ENOENT');
    assert.equal(await code(() => F(v).rmdir(ROOT_INO, name('d'), ctx)), 'ENOTEMPTY');
    assert.equal(await code(() => F(v).mkdir(d.attr.ino + 1, name('z'), 0o755, ctx)), 'ENOTDIR');
    assert.equal(await code(() => F(v).unlink(ROOT_INO, name('d'), ctx)), 'EISDIR');
    assert.equal(await code(() => F(v).mkdir(ROOT_INO, Buffer.alloc(256, 0x61), 0o755, ctx)), 'ENAMETOOLONG');
    assert.equal(await code(() => F(v).mkdir(ROOT_INO, Buffer.alloc(255, 0x61), 0o755, ctx)), 'ok');
    assert.equal(await code(() => F(v).rename(ROOT_INO, name('d'), d.attr.ino, name('inside'), 0, ctx)), 'EINVAL');
    const f = await F(v).lookup(d.attr.ino, name('x'), ctx);
    assert.equal(await code(() => F(v).rename(d.attr.ino, name('x'), ROOT_INO, name('d'), 0, ctx)), 'EISDIR');
    void f;
  });
});

test('readdir pages through many entries with stable cookies', async () => {
  await withVolume(async (v) => {
    const n = 3000;
    for (let i = 0; i < n; i++) await F(v).mknod(ROOT_INO, name(`f${i}`), 0o100644, 0, ctx);
    const seen = new Set<string>();
    let off = 0;
    for (;;) {
      const page = await F(v).readdir(ROOT_INO, 0, off, 500);
      if (!page.length) break;
      for (const e of page) seen.add(e.name.toString());
      off = page[page.length - 1].nextOffset;
    }
    assert.equal(seen.size, n + 2);
  });
});

test('a write into the uncut tail while a flush runs is not undone by the flush', async () => {
  await withVolume(async (v) => {
    const data = randomData(3 * 1024 * 1024, 21);
    const { entry, open } = await F(v).create(ROOT_INO, name('t'), 0o644, 1, ctx);
    const ino = entry.attr.ino;
    await F(v).write(ino, open.fh, data, 0, 0);
    // A background flush of an open file keeps the bytes after the last cut buffered; the
    // ranges go to the ingest workers, so the write below lands while they are being cut.
    const flushing = v.fs.flushAll(false, false);
    await new Promise((r) => setImmediate(r));
    const patch = Buffer.alloc(100, 0xab);
    await F(v).write(ino, open.fh, patch, data.length - 100, 0);
    await flushing;
    const want = Buffer.concat([data.subarray(0, data.length - 100), patch]);
    assert.ok((await readAll(v, ino)).equals(want), 'buffered view after the flush');
    await F(v).release(ino, open.fh);
    await v.fs.sync();
    v.store.dropCache();
    assert.ok((await readAll(v, ino)).equals(want), 'stored view');
    assert.equal(v.fs.buffered, 0, 'nothing left counted as buffered');
  });
});

test('pipelined batches: a failed commit hands back its data and that of every later batch, in order; nothing is lost', async () => {
  await withFaultyVolume({ dirtyLimit: 256 << 10 }, async (v, setFaults) => {
    // The first batch's device sync fails after 300 ms (ENOSPC leaves the device in service),
    // while the next batch is already cut and sealed; every later sync succeeds.
    setFaults([{ path: 'd0.img', op: 'sync', error: 'ENOSPC', delayMs: 300, count: 1 }]);
    // Old bytes, then new bytes over the same region, each write a batch of its own: while the
    // first batch's sync hangs, the second is taken. Handed back in the wrong order, the old
    // bytes would win.
    const KB = 256 << 10;
    const old = randomData(KB, 32);
    const want = randomData(KB, 33);
    const { entry, open } = await F(v).create(ROOT_INO, name('p'), 0o644, 1, ctx);
    const ino = entry.attr.ino;
    let failures = 0;
    const put = async (buf: Buffer, off: number) => {
      for (;;) {
        try {
          await F(v).write(ino, open.fh, buf, off, 0);
          return;
        } catch (e) {
          assert.equal((e as FsError).code, 'ENOSPC');
          failures++;
        }
      }
    };
    await put(old, 0);
    await new Promise((r) => setTimeout(r, 50)); // the old bytes are taken and their sync hangs
    await put(want, 0);
    await Promise.resolve().then(() => F(v).fsync(ino, open.fh, false)).catch((e: FsError) => {
      assert.equal(e.code, 'ENOSPC');
      failures++;
    });
    await F(v).fsync(ino, open.fh, false);
    assert.equal(failures, 1, 'the failure is reported once');
    assert.ok((await readAll(v, ino)).equals(want), 'buffered and stored view');
    await F(v).release(ino, open.fh);
    v.store.dropCache();
    assert.ok((await readAll(v, ino)).equals(want), 'stored view');
    assert.equal(v.fs.buffered, 0);
  });
});

test('RAID 5: damage in two chunks on two devices of one row: a whole-file read falls back to chunk by chunk and returns the right bytes', async () => {
  await withVolume(
    async (v) => {
      const data = randomData(3 << 20, 3);
      const ino = await writeFile(v, ROOT_INO, 'r5', data);
      await v.fs.sync();
      // Row 0 keeps data strip 0 on one device and strip 1 on another. One flipped byte in a
      // chunk of each, at strip offsets no chunk spans both: the chunks read together verify under
      // no single reconstruction, so they fall back to one by one, each of which repairs.
      const seg = v.meta.segments().find((x) => x.row === 0)!;
      const h = seg.height;
      const chunks = v.meta.chunksInSegment(0).map((c) => ({ a: c.off, b: c.off + c.storedLen }));
      const x = chunks.find((c) => c.b <= h)!;
      const y = chunks.find((c) => c.a >= h && c.b <= 2 * h && (c.a - h >= x.b || c.b - h <= x.a))!;
      assert.ok(x && y, 'two chunks in different strips at different strip offsets');
      const map = rowMap(buildGeometry(normalizeLayout({ level: 5, devices: 3 })).groups[0], 0);
      const flip = (slot: number, stripOff: number) => {
        const fd = openSync(v.raid.status().find((m) => m.slot === slot)!.path, 'r+');
        const b = Buffer.alloc(1);
        readSync(fd, b, 0, 1, dataStartFor(normalizeLayout({ level: 5, devices: 3 }).stripSize) + stripOff);
        b[0] ^= 0x5a;
        writeSync(fd, b, 0, 1, dataStartFor(normalizeLayout({ level: 5, devices: 3 }).stripSize) + stripOff);
        closeSync(fd);
      };
      flip(map.data[0], (x.a + x.b) >> 1);
      flip(map.data[1], ((y.a + y.b) >> 1) - h);
      v.store.dropCache();
      assert.ok((await readAll(v, ino)).equals(data));
      const errors = v.raid.status().reduce((n, x) => n + x.checksumErrors, 0);
      assert.ok(errors >= 2, `checksum errors counted: ${errors}`);
    },
    { level: 5, devices: 3 },
  );
});

test('storing buffered data later does not move mtime or ctime (tar: "file changed as we read it")', async () => {
  await withVolume(async (v) => {
    const { entry, open } = await F(v).create(ROOT_INO, name('c'), 0o644, 1, ctx);
    const ino = entry.attr.ino;
    await F(v).write(ino, open.fh, randomData(100_000, 9), 0, 0);
    const before = await F(v).getattr(ino, undefined, ctx);
    await new Promise((r) => setTimeout(r, 30));
    await v.fs.flushAll(true, false);
    const held = await F(v).getattr(ino, undefined, ctx);
    await F(v).release(ino, open.fh);
    await v.fs.sync();
    const after = await F(v).getattr(ino, undefined, ctx);
    for (const a of [held, after]) {
      assert.equal(a.mtimeNs, before.mtimeNs);
      assert.equal(a.ctimeNs, before.ctimeNs);
      assert.equal(a.size, before.size);
    }
  });
});

test('chunk cache statistics count each chunk of a read once: a cold read all misses, a warm one all hits', async () => {
  await withVolume(
    async (v) => {
      const data = randomData(3 << 20, 41);
      const ino = await writeFile(v, ROOT_INO, 's', data);
      await v.fs.sync();
      v.store.dropCache();
      const chunks = v.meta.allExtents(ino).length;
      const r0 = v.store.stats.reads;
      const h0 = v.store.stats.cacheHits;
      assert.ok((await readAll(v, ino)).equals(data));
      assert.equal(v.store.stats.reads - r0, chunks, 'one lookup per chunk');
      assert.equal(v.store.stats.cacheHits - h0, 0);
      assert.ok((await readAll(v, ino)).equals(data));
      assert.equal(v.store.stats.reads - r0, 2 * chunks);
      assert.equal(v.store.stats.cacheHits - h0, chunks, 'the second read is all hits');
      // A read inside one chunk (a group of one).
      v.store.dropCache();
      const r1 = v.store.stats.reads;
      assert.ok((await F(v).read(ino, 0, 100, 1000)).equals(data.subarray(1000, 1100)));
      assert.equal(v.store.stats.reads - r1, 1);
    },
    { level: 5, devices: 3 },
  );
});

test('a utimens while a batch syncs its rows is not undone by the batch (rsync sets mtime right after close)', async () => {
  await withFaultyVolume({}, async (v, setFaults) => {
    const ino = await writeFile(v, ROOT_INO, 'u', randomData(100_000, 5));
    setFaults([{ path: 'd0.img', op: 'sync', error: 'none', delayMs: 300, count: 1 }]);
    const flushing = v.fs.flushAll(false, false);
    await new Promise((r) => setTimeout(r, 100)); // the batch is syncing its rows now
    const when = 1_234_567_890_123_456_789n;
    await F(v).setattr(ino, { mtimeNs: when }, undefined, ctx);
    await flushing;
    await v.fs.sync();
    assert.equal((await F(v).getattr(ino, undefined, ctx)).mtimeNs, when);
    assert.equal(v.meta.inode(ino)!.mtime, when, 'stored mtime');
  });
});
