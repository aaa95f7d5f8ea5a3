// Creation guards, layout validation, the volume header area, superblock damage, ENOSPC, write
// faults, the fault injector itself, scrub, and "never return unverified bytes".
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { open as fsOpen, truncate, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { RaidArray, faultyOpenDevice, fileOpenDevice, gfMul, computePQ, normalizeLayout, type LayoutSpec } from '../../src/raid/index.ts';
import { buildGeometry, mirrorOrder, rowMap } from '../../src/raid/layout.ts';
import { createArray, DATA_START, DEV_SIZE, fillRows, fixture, openArray, randBuf, readDeviceData, readEverything, rng, STRIP, verifierFor } from './helpers.ts';

const HEADER_BLOB = 8 * 1024 * 1024 - 4096;

test('exports the math for tests and bench', () => {
  assert.equal(gfMul(2, 0x80), 0x1d);
  assert.equal(typeof computePQ, 'function');
});

test('bad layouts are rejected with clear errors', () => {
  const bad: [LayoutSpec, RegExp][] = [
    [{ level: 5, devices: 2 }, /RAID 5 needs at least 3/],
    [{ level: 6, devices: 3 }, /RAID 6 needs at least 4/],
    [{ level: 1, devices: 1 }, /RAID 1 needs at least 2/],
    [{ level: 10, devices: 3 }, /multiple of 2 devices, at least 4/],
    [{ level: 10, devices: 6, mirrors: 4 }, /mirrors must be 2 or 3/],
    [{ level: 10, devices: 4, mirrors: 3 }, /at least 6/],
    [{ level: 50, devices: 5, groupSize: 3 }, /at least 2 groups/],
    [{ level: 50, devices: 4 }, /groupSize >= 3/],
    [{ level: 60, devices: 6, groupSize: 3 }, /groupSize >= 4/],
    [{ level: 60, devices: 4, groupSize: 4 }, /at least 2 groups/],
    [{ level: 5, devices: 4, stripSize: 1000 }, /stripSize/],
    [{ level: 7 as 5, devices: 4 }, /unknown level/],
    [{ level: 5, devices: 4, mirrors: 2 }, /implies mirrors 1/],
  ];
  for (const [spec, re] of bad) assert.throws(() => normalizeLayout(spec), re, JSON.stringify(spec));
  assert.deepEqual(normalizeLayout({ level: 60, devices: 8 }), { level: 60, devices: 8, groupSize: 4, mirrors: 1, stripSize: 65536 });
  assert.deepEqual(normalizeLayout({ level: 1, devices: 3 }), { level: 1, devices: 3, groupSize: 3, mirrors: 3, stripSize: 65536 });
  assert.equal(normalizeLayout({ level: 0, devices: 1 }).devices, 1);
});

test('create: refuses another volume’s device unless forced, a too-small size, wrong path count', async (t) => {
  const f = await fixture(3);
  t.after(() => f.cleanup());
  const a = await createArray(f, { level: 5, devices: 3 });
  await a.writeHeaderArea(Buffer.from('old volume key header'));
  await a.close();
  const other = { volumeId: Buffer.alloc(16, 9), layout: { level: 1 as const, devices: 3, stripSize: STRIP }, devices: f.paths, deviceSize: DEV_SIZE, openDevice: f.openDevice };
  await assert.rejects(RaidArray.create(other), (e: Error & { code?: string }) => {
    assert.equal(e.message, `${f.paths[0]} belongs to another hoardfs volume; use --force to overwrite`);
    return true;
  });
  // Refusal left the old volume intact.
  const again = await openArray(f);
  assert.equal(again.layout.level, 5);
  await again.close();
  const b = await RaidArray.create({ ...other, force: true });
  assert.equal(b.layout.level, 1);
  const hdr = await b.readHeaderArea();
  assert.ok(hdr.every((c) => c !== null && c.every((x) => x === 0)), 'old key header wiped');
  await b.close();
  await assert.rejects(RaidArray.create({ ...other, force: true, deviceSize: 17 * 1024 * 1024 }), /too small/);
  await assert.rejects(RaidArray.create({ ...other, devices: f.paths.slice(0, 2) }), /3 devices but 2 paths/);
  await assert.rejects(RaidArray.create({ ...other, devices: [f.paths[0], f.paths[0], f.paths[1]] }), /listed twice/);
  // A device that cannot grow to the requested size is refused.
  const tiny: typeof fileOpenDevice = async (p, c) => {
    const io = await fileOpenDevice(p, c);
    return { ...io, truncate: async () => {} };
  };
  const g = await fixture(2, 'g');
  t.after(() => g.cleanup());
  await assert.rejects(
    RaidArray.create({ volumeId: Buffer.alloc(16, 1), layout: { level: 1, devices: 2, stripSize: STRIP }, devices: g.paths, deviceSize: DEV_SIZE, openDevice: tiny }),
    /too small/,
  );
});

test('header area: round trip on every device, shorter blob overwrites a longer one', async (t) => {
  const f = await fixture(4);
  t.after(() => f.cleanup());
  const a = await createArray(f, { level: 6, devices: 4 });
  const r = rng(3);
  const long = randBuf(r, 300_000);
  await a.writeHeaderArea(long);
  let copies = await a.readHeaderArea();
  assert.equal(copies.length, 8);
  for (const c of copies) {
    assert.equal(c!.length, HEADER_BLOB);
    assert.ok(c!.subarray(0, long.length).equals(long));
  }
  const short = Buffer.from('short');
  await a.writeHeaderArea(short);
  copies = await a.readHeaderArea();
  for (const c of copies) {
    assert.ok(c!.subarray(0, 5).equals(short));
    assert.ok(c!.subarray(5).every((x) => x === 0), 'no tail of the longer blob survives');
  }
  await assert.rejects(a.writeHeaderArea(Buffer.alloc(HEADER_BLOB + 1)), RangeError);
  await a.faultDevice(1, 'test');
  copies = await a.readHeaderArea();
  assert.equal(copies[2], null);
  assert.equal(copies[3], null);
  // The row area is untouched by header writes.
  const data = randBuf(r, 5000);
  const h = await a.writeRow(0, data);
  await a.writeHeaderArea(long);
  assert.ok((await a.readRange(0, h, 0, data.length)).equals(data));
  await a.close();
});

test('superblock: one damaged copy is tolerated; both copies damaged makes the device MISSING', async (t) => {
  const f = await fixture(3);
  t.after(() => f.cleanup());
  const r = rng(5);
  let a = await createArray(f, { level: 5, devices: 3 });
  await fillRows(a, f, r, 3);
  await a.close();
  const poke = async (path: string, pos: number) => {
    const fh = await fsOpen(path, 'r+');
    await fh.write(Buffer.from([0xde, 0xad]), 0, 2, pos);
    await fh.close();
  };
  for (const p of f.paths) await poke(p, 100); // copy 0 everywhere
  await poke(f.paths[1], 4096 + 200); // and both copies of d1
  a = await openArray(f);
  assert.equal(a.status()[0].state, 'ONLINE');
  assert.equal(a.status()[2].state, 'ONLINE');
  assert.equal(a.status()[1].state, 'MISSING');
  await readEverything(a, f, r, { verify: true });
  // Writing a row records d1 as FAULTED and rewrites both copies on the others.
  const data = randBuf(r, 100);
  f.expected.set(3, { data, height: await a.writeRow(3, data) });
  await a.close();
  a = await openArray(f);
  assert.equal(a.status()[1].state, 'MISSING', 'still unrecognisable');
  assert.ok(f.logs.some((l) => l.includes(`${f.paths[1]} carries no hoardfs superblock`)));
  await readEverything(a, f, r, { verify: true });
  await a.close();
});

test('ENOSPC from a device propagates as ENOSPC and faults nothing', async (t) => {
  const f = await fixture(4);
  t.after(() => f.cleanup());
  const r = rng(6);
  const a = await createArray(f, { level: 5, devices: 4 });
  await f.setRules([{ path: basename(f.paths[2]), op: 'write', error: 'ENOSPC', from: DATA_START }]);
  await assert.rejects(a.writeRow(0, randBuf(r, 9000)), { code: 'ENOSPC' });
  assert.ok(a.status().every((d) => d.state === 'ONLINE'));
  assert.equal(a.degraded, false);
  await f.setRules([]);
  const data = randBuf(r, 9000);
  const h = await a.writeRow(0, data);
  assert.ok((await a.readRange(0, h, 0, 9000)).equals(data));
  await a.close();
});

test('write EIO faults the device when the group can spare it, else fails the write', async (t) => {
  const f = await fixture(2);
  t.after(() => f.cleanup());
  const r = rng(8);
  const z = await createArray(f, { level: 0, devices: 2 });
  await f.setRules([{ path: basename(f.paths[1]), op: 'write', error: 'EIO', from: DATA_START, count: 1 }]);
  await assert.rejects(z.writeRow(0, randBuf(r, 2 * STRIP)), { code: 'EIO' });
  assert.equal(z.status()[1].state, 'ONLINE', 'RAID 0 cannot drop a device; the write fails instead');
  assert.equal(z.status()[1].writeErrors, 1);
  await z.close();
  const g = await fixture(2, 'm');
  t.after(() => g.cleanup());
  const m = await createArray(g, { level: 1, devices: 2 });
  await g.setRules([{ path: basename(g.paths[0]), op: 'write', error: 'EIO', from: DATA_START }]);
  const data = randBuf(r, STRIP - 3);
  const h = await m.writeRow(0, data);
  assert.equal(m.status()[0].state, 'FAULTED');
  assert.equal(m.canWrite, true);
  assert.ok((await m.readRange(0, h, 0, data.length, verifierFor(data))).equals(data));
  // The second copy is now the last: losing it fails the write.
  await g.setRules([{ path: basename(g.paths[1]), op: 'write', error: 'EIO', from: DATA_START }]);
  await assert.rejects(m.writeRow(1, data), { code: 'EIO' });
  assert.equal(m.status()[1].state, 'ONLINE');
  await g.setRules([]);
  await m.close();
});

test('a device truncated while open: short reads are reconstructed', async (t) => {
  const f = await fixture(3);
  t.after(() => f.cleanup());
  const r = rng(12);
  const a = await createArray(f, { level: 5, devices: 3 });
  await fillRows(a, f, r, 5);
  await truncate(f.paths[0], DATA_START + STRIP);
  await readEverything(a, f, r, { verify: true });
  await readEverything(a, f, r, { verify: false });
  assert.ok(a.status()[0].readErrors > 0);
  await a.close();
});

test('never returns bytes that fail verify; EIO instead', async (t) => {
  const f = await fixture(4);
  t.after(() => f.cleanup());
  const r = rng(14);
  const a = await createArray(f, { level: 6, devices: 4 });
  const data = randBuf(r, 2 * STRIP);
  const h = await a.writeRow(0, data);
  let calls = 0;
  await assert.rejects(
    a.readRange(0, h, 10, 5000, () => (calls++, false)),
    { code: 'EIO' },
  );
  assert.ok(calls > 1, 'tried reconstructions');
  assert.deepEqual(a.errorCounts(), { readErrors: 0, writeErrors: 0, checksumErrors: 0 }, 'nothing healed on a failed verify');
  assert.equal(await a.readRange(0, h, 0, 0).then((b) => b.length), 0);
  await assert.rejects(a.readRange(0, h, 0, 2 * h + 1), RangeError);
  await assert.rejects(a.readRange(0, 5000, 0, 10), RangeError);
  await assert.rejects(a.writeRow(0, Buffer.alloc(a.rowDataBytes + 1)), RangeError);
  assert.equal(await a.writeRow(1, Buffer.alloc(1)), 4096);
  assert.equal(await a.writeRow(1, Buffer.alloc(a.rowDataBytes)), STRIP);
  await a.close();
});

test('checkRow finds parity and mirror mismatches, repairs only when asked', async (t) => {
  for (const spec of [{ level: 6, devices: 4 }, { level: 10, devices: 4 }] as LayoutSpec[]) {
    const f = await fixture(spec.devices);
    t.after(() => f.cleanup());
    const r = rng(15);
    const a = await createArray(f, spec);
    await fillRows(a, f, r, 4);
    await a.close();
    const before = await Promise.all(f.paths.map(readDeviceData));
    // Corrupt only redundancy in row 2 (P and Q, or the copies readRange does not prefer): the
    // state a scrub finds after the chunks themselves have verified.
    const geo = buildGeometry(normalizeLayout({ ...spec, stripSize: STRIP }));
    const victims = geo.groups.flatMap((g) => {
      const m = rowMap(g, 2);
      return g.kind === 'mirror' ? [g.slots[mirrorOrder(g, 2)[1]]] : [g.slots[m.p], g.slots[m.q]];
    });
    for (const v of victims) {
      const fh = await fsOpen(f.paths[v], 'r+');
      await fh.write(Buffer.from([1, 2, 3]), 0, 3, DATA_START + 2 * STRIP + 7);
      await fh.close();
    }
    const a2 = await openArray(f);
    const { data, height } = f.expected.get(2)!;
    assert.ok((await a2.readRange(2, height, 0, data.length, verifierFor(data))).equals(data));
    const check = await a2.checkRow(2, height, false);
    assert.equal(check.mismatches, victims.length, `${spec.level}: mismatches found`);
    assert.equal(check.repaired, 0);
    const fixd = await a2.checkRow(2, height, true);
    assert.equal(fixd.repaired, fixd.mismatches);
    assert.deepEqual(await a2.checkRow(2, height, false), { mismatches: 0, repaired: 0 });
    await a2.close();
    const after = await Promise.all(f.paths.map(readDeviceData));
    for (let i = 0; i < f.paths.length; i++) assert.ok(after[i].subarray(2 * STRIP, 2 * STRIP + height).equals(before[i].subarray(2 * STRIP, 2 * STRIP + height)), `${spec.level}: device ${i} restored`);
  }
});

test('fault injector: ranges, counts, reload on change, open faults', async (t) => {
  const f = await fixture(1);
  t.after(() => f.cleanup());
  const path = join(f.dir, 'x.img');
  await writeFile(path, Buffer.alloc(1000));
  const open = faultyOpenDevice(fileOpenDevice, f.rulesPath);
  const io = await open(path, false);
  const b = Buffer.alloc(10);
  await f.setRules([{ path: 'x.img', op: 'read', error: 'EIO', from: 500, to: 600, count: 2 }]);
  assert.equal(await io.read(b, 0), 10);
  await assert.rejects(io.read(b, 495), { code: 'EIO' });
  await assert.rejects(io.read(b, 599), { code: 'EIO' });
  assert.equal(await io.read(b, 550), 10, 'count exhausted');
  await f.setRules([{ path: path, op: 'write', error: 'ENOSPC' }, { path: 'x.img', op: 'sync', error: 'EIO' }]);
  await assert.rejects(io.write(b, 0), { code: 'ENOSPC' });
  await assert.rejects(io.sync(), { code: 'EIO' });
  await f.setRules({ rules: [{ path: 'x.img', op: 'open' }] } as unknown as unknown[]);
  await assert.rejects(open(path, false), { code: 'EIO' });
  await f.setRules([]);
  await io.write(b, 0);
  await io.close();
});

test('a verify callback that throws counts as a rejection, reconstruction continues', async (t) => {
  const f = await fixture(3);
  t.after(() => f.cleanup());
  const r = rng(18);
  const a = await createArray(f, { level: 5, devices: 3 });
  const data = randBuf(r, 2 * STRIP);
  const h = await a.writeRow(0, data);
  await a.close();
  const fh = await fsOpen(f.paths[0], 'r+'); // row 0: P on the last member, data strip 0 on the first
  await fh.write(Buffer.from([0x55]), 0, 1, DATA_START + 17);
  await fh.close();
  const b = await openArray(f);
  const good = verifierFor(data.subarray(0, 100));
  const got = await b.readRange(0, h, 0, 100, (x) => {
    if (!good(x)) throw new Error('bad tag');
    return true;
  });
  assert.ok(got.equals(data.subarray(0, 100)));
  assert.equal(b.status()[0].checksumErrors, 1);
  await b.close();
});
