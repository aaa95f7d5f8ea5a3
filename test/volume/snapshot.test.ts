// Metadata snapshots in the store and restore-metadata (CLI), on an encrypted RAID 5 volume.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { Volume, releaseLock } from '../../src/volume/volume.ts';
import type { Ctx, FsOps } from '../../src/fs/types.ts';
import { ROOT_INO } from '../../src/meta/metadata.ts';
import { hoardfs, makeVolume, randomData } from '../helpers.ts';

const ctx: Ctx = { uid: 0, gid: 0, pid: 1, umask: 0o022 };

async function open(dir: string, passFile: string): Promise<Volume> {
  return Volume.open({ dir, lock: true, getSecret: async () => ({ secret: fs.readFileSync(passFile).subarray(0, -1), kind: 'passphrase' }), fs: { flushIntervalMs: 0 } });
}

async function put(v: Volume, name: string, data: Buffer): Promise<void> {
  const ops: FsOps = v.fs;
  const { entry, open: o } = await ops.create(ROOT_INO, Buffer.from(name), 0o644, 1, ctx);
  await ops.write(entry.attr.ino, o.fh, data, 0, 0);
  await ops.release(entry.attr.ino, o.fh);
}

async function get(v: Volume, name: string): Promise<Buffer> {
  const ops: FsOps = v.fs;
  const e = await ops.lookup(ROOT_INO, Buffer.from(name), ctx);
  return ops.read(e.attr.ino, 0, e.attr.size, 0);
}

test('delete the database, restore-metadata, everything up to the snapshot reads back', async () => {
  const tv = await makeVolume(['--level', '5', '--device', '{root}/d0', '--device', '{root}/d1', '--device', '{root}/d2']);
  try {
    const a = randomData(700_000, 1);
    const b = randomData(3_000_000, 2);
    let v = await open(tv.dir, tv.passFile);
    await put(v, 'a', a);
    await put(v, 'b', b);
    await v.close(); // unmount takes a snapshot
    for (const f of fs.readdirSync(tv.dir)) if (f.startsWith('meta.db')) fs.rmSync(join(tv.dir, f));
    const refused = await hoardfs(['stats', tv.dir, ...tv.secretArgs]);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /missing/);
    const r = await hoardfs(['restore-metadata', tv.dir, ...tv.secretArgs]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /restored the metadata from snapshot/);
    v = await open(tv.dir, tv.passFile);
    assert.ok((await get(v, 'a')).equals(a));
    assert.ok((await get(v, 'b')).equals(b));
    // Work after the restore is kept and snapshotted as usual.
    await put(v, 'c', randomData(10_000, 3));
    await v.close();
    const f = await hoardfs(['fsck', tv.dir, ...tv.secretArgs]);
    assert.equal(f.code, 0, f.stdout + f.stderr);
  } finally {
    await tv.cleanup();
  }
});

test('a damaged database is refused with a pointer to restore-metadata; restore lists what was lost', async () => {
  const tv = await makeVolume([]);
  try {
    let v = await open(tv.dir, tv.passFile);
    await put(v, 'kept', randomData(100_000, 4));
    await v.close();
    // Changes after the newest snapshot, then a crash (no unmount, so no new snapshot).
    v = await open(tv.dir, tv.passFile);
    await put(v, 'late', randomData(50_000, 5));
    await v.fs.sync();
    v.meta.close();
    await v.raid.close();
    releaseLock(tv.dir);
    const copy = join(tv.root, 'meta.copy');
    fs.copyFileSync(join(tv.dir, 'meta.db'), copy);
    // Damage: overwrite a page in the middle of the database file.
    const fd = fs.openSync(join(tv.dir, 'meta.db'), 'r+');
    fs.writeSync(fd, randomData(4096, 9), 0, 4096, 0);
    fs.closeSync(fd);
    const m = await hoardfs(['mount', tv.dir, tv.mnt, ...tv.secretArgs]);
    assert.notEqual(m.code, 0);
    assert.match(m.stderr, /restore-metadata/);
    // With the readable copy back in place, restore reports exactly what the snapshot lacks.
    fs.copyFileSync(copy, join(tv.dir, 'meta.db'));
    const r = await hoardfs(['restore-metadata', tv.dir, ...tv.secretArgs]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /created after the snapshot: \/late/);
    v = await open(tv.dir, tv.passFile);
    assert.equal((await get(v, 'kept')).length, 100_000);
    await v.close();
  } finally {
    await tv.cleanup();
  }
});
