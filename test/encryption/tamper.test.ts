// Issue 4, test 2: tampering on real mounts. Flipped bytes in stored chunks give EIO (never wrong
// bytes) without redundancy and are repaired (and counted) with it; a damaged meta.db is refused
// with a pointer to restore-metadata; one damaged header copy is detected and rewritten from the
// good one; all copies damaged is a clear error.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { KEY_HEADER_SIZE } from '../../src/crypto/index.ts';
import { dataStartFor, HEADER_BASE, HEADER_COPY } from '../../src/raid/layout.ts';
import { hoardfs, makeVolume, randomData } from '../helpers.ts';
import { devices, flipBytes, ok } from './util.ts';

function dataStart(dir: string): number {
  return dataStartFor(JSON.parse(fs.readFileSync(join(dir, 'hoardfs.json'), 'utf8')).layout.stripSize);
}

/** Reads a file in 64 KiB pieces: counts pieces that fail with EIO (or read short) and pieces with wrong bytes. */
function readPieces(path: string, ref: Buffer): { eio: number; wrong: number; good: number } {
  const r = { eio: 0, wrong: 0, good: 0 };
  const fd = fs.openSync(path, 'r');
  try {
    for (let off = 0; off < ref.length; off += 65536) {
      const want = ref.subarray(off, Math.min(ref.length, off + 65536));
      const b = Buffer.alloc(want.length);
      try {
        // The page cache may return the readable prefix of a range (a short read) before the
        // EIO: those bytes must still be the right ones.
        const n = fs.readSync(fd, b, 0, b.length, off);
        if (!b.subarray(0, n).equals(want.subarray(0, n))) r.wrong++;
        else if (n === want.length) r.good++;
        else r.eio++;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EIO') throw e;
        r.eio++;
      }
    }
  } finally {
    fs.closeSync(fd);
  }
  return r;
}

const FLIP_SPAN = 12 << 20;
const FLIP_STEP = 97 * 1024 + 13;

test('flipped bytes in the data area of one device: EIO, never wrong bytes', async () => {
  const tv = await makeVolume(devices(1, '64M'));
  try {
    await tv.mount();
    const files = [randomData(1_500_000, 11), randomData(900_000, 12), randomData(2_100_000, 13)];
    files.forEach((b, i) => fs.writeFileSync(join(tv.mnt, `f${i}`), b));
    await tv.umount();
    const start = dataStart(tv.dir);
    assert.ok(flipBytes(join(tv.root, 'd0'), start, start + FLIP_SPAN, FLIP_STEP) > 50);
    await tv.mount();
    let eio = 0;
    files.forEach((b, i) => {
      const r = readPieces(join(tv.mnt, `f${i}`), b);
      assert.equal(r.wrong, 0, `f${i}: wrong bytes returned`);
      eio += r.eio;
    });
    assert.ok(eio > 0, 'the flips should have made some pieces unreadable');
    await tv.umount();
  } finally {
    await tv.cleanup();
  }
});

test('RAID 1, 5 and 6: the same flips are repaired from redundancy and counted in status', async () => {
  for (const [level, n, damaged] of [
    [1, 2, 1],
    [5, 3, 1],
    [6, 4, 2],
  ] as const) {
    const tv = await makeVolume(['--level', String(level), ...devices(n, '64M')]);
    try {
      await tv.mount();
      const data = randomData(2_500_000, 20 + level);
      fs.writeFileSync(join(tv.mnt, 'f'), data);
      await tv.umount();
      const start = dataStart(tv.dir);
      for (let d = 0; d < damaged; d++) flipBytes(join(tv.root, `d${d}`), start + d * 4099, start + FLIP_SPAN, FLIP_STEP);
      await tv.mount();
      const r = readPieces(join(tv.mnt, 'f'), data);
      assert.deepEqual({ eio: r.eio, wrong: r.wrong }, { eio: 0, wrong: 0 }, `RAID ${level}`);
      // Mirrors may serve reads from the intact copy: scrub reads every copy.
      ok(await hoardfs(['scrub', tv.dir]), 'scrub');
      const st = JSON.parse(ok(await hoardfs(['status', tv.dir, '--json'])).stdout);
      const cksum = st.devices.reduce((a: number, d: { checksumErrors: number }) => a + d.checksumErrors, 0);
      assert.ok(cksum > 0, `RAID ${level}: checksum errors counted in status (${JSON.stringify(st.devices)})`);
      assert.deepEqual(st.damagedFiles, []);
      await tv.umount();
      // Repaired on the devices: a second scrub finds nothing to fix.
      const s2 = ok(await hoardfs(['scrub', tv.dir, '--json', ...tv.secretArgs]));
      const rep = JSON.parse(s2.stdout);
      assert.equal(rep.repairedChunks + rep.parityRepaired + rep.unrecoverableChunks, 0, `RAID ${level}: ${s2.stdout}`);
    } finally {
      await tv.cleanup();
    }
  }
});

test('key header copies and meta.db: one bad copy is rewritten, all bad is refused, a bad database names restore-metadata', async () => {
  const tv = await makeVolume(devices(1, '64M'));
  try {
    await tv.mount();
    const data = randomData(300_000, 31);
    fs.writeFileSync(join(tv.mnt, 'f'), data);
    await tv.umount();
    const dev = join(tv.root, 'd0');
    const backup = join(tv.root, 'hdr.bak');
    ok(await hoardfs(['header', 'backup', tv.dir, backup]));
    const copy = (c: number) => {
      const fd = fs.openSync(dev, 'r');
      const b = Buffer.alloc(KEY_HEADER_SIZE);
      fs.readSync(fd, b, 0, b.length, HEADER_BASE + c * HEADER_COPY);
      fs.closeSync(fd);
      return b;
    };
    assert.ok(copy(0).equals(copy(1)));
    // One copy: flips in its checksummed metadata and in the active slot's material.
    flipBytes(dev, HEADER_BASE + 100, HEADER_BASE + 3000, 700);
    flipBytes(dev, HEADER_BASE + 65536 + 5000, HEADER_BASE + 65536 + 6000, 300);
    assert.ok(!copy(0).equals(copy(1)));
    await tv.mount();
    assert.ok(fs.readFileSync(join(tv.mnt, 'f')).equals(data));
    await tv.umount();
    assert.match(fs.readFileSync(join(tv.dir, 'daemon.log'), 'utf8'), /rewriting damaged or stale key header copies/);
    assert.ok(copy(0).equals(copy(1)), 'the damaged copy was rewritten from the good one');
    // Every copy damaged: a clear error, and a header backup brings the volume back.
    flipBytes(dev, HEADER_BASE + 100, HEADER_BASE + 3000, 700);
    flipBytes(dev, HEADER_BASE + HEADER_COPY + 100, HEADER_BASE + HEADER_COPY + 3000, 700);
    const m = await hoardfs(['mount', tv.dir, tv.mnt, ...tv.secretArgs]);
    assert.notEqual(m.code, 0);
    assert.match(m.stderr, /no readable key header on any device.*hoardfs header restore/);
    ok(await hoardfs(['header', 'restore', tv.dir, backup]));
    await tv.mount();
    assert.ok(fs.readFileSync(join(tv.mnt, 'f')).equals(data));
    await tv.umount();
    // meta.db: one flipped byte per page.
    const db = join(tv.dir, 'meta.db');
    assert.ok(!fs.existsSync(db + '-wal') || fs.statSync(db + '-wal').size === 0);
    flipBytes(db, 200, fs.statSync(db).size, 4096);
    const m2 = await hoardfs(['mount', tv.dir, tv.mnt, ...tv.secretArgs]);
    assert.notEqual(m2.code, 0);
    assert.match(m2.stderr, /restore-metadata/);
    ok(await hoardfs(['restore-metadata', tv.dir, ...tv.secretArgs]));
    await tv.mount();
    assert.ok(fs.readFileSync(join(tv.mnt, 'f')).equals(data));
    await tv.umount();
  } finally {
    await tv.cleanup();
  }
});
