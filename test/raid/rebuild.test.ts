// Replace/rebuild, interrupted rebuild resumed after reopen, hot spares, stale devices.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rename, rm } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { RaidArray } from '../../src/raid/index.ts';
import { createArray, DATA_START, fillRows, fixture, openArray, randBuf, readEverything, rng, rowsInUse, STRIP } from './helpers.ts';

for (const { name, spec, fail, sameFile } of [
  { name: 'RAID 5', spec: { level: 5, devices: 4 } as const, fail: [1], sameFile: true },
  { name: 'RAID 6', spec: { level: 6, devices: 5 } as const, fail: [0, 3], sameFile: false },
  { name: 'RAID 10', spec: { level: 10, devices: 4, mirrors: 2 } as const, fail: [2], sameFile: false },
  { name: 'RAID 60', spec: { level: 60, devices: 8, groupSize: 4 } as const, fail: [1, 6], sameFile: false },
]) {
  test(`${name}: replace rebuilds full redundancy`, async (t) => {
    const f = await fixture(spec.devices);
    t.after(() => f.cleanup());
    const r = rng(42 + spec.level);
    let arr = await createArray(f, spec);
    await fillRows(arr, f, r);
    await arr.close();
    for (const s of fail) await rm(f.paths[s]);
    arr = await openArray(f);
    assert.equal(arr.degraded, true);
    for (const s of fail) assert.equal(arr.status()[s].state, 'MISSING');
    const seen: [number, number][] = [];
    for (const s of fail) {
      const newPath = sameFile ? f.paths[s] : join(f.dir, `new${s}.img`);
      await arr.replace(s, newPath, rowsInUse(f), (d, tot) => seen.push([d, tot]));
      f.paths[s] = newPath;
    }
    assert.equal(arr.degraded, false);
    assert.equal(arr.rebuildPending, false);
    assert.ok(arr.status().every((d) => d.state === 'ONLINE'));
    assert.deepEqual(seen.at(-1), [f.expected.size, f.expected.size]);
    await readEverything(arr, f, r, { verify: true });
    await arr.close();
    // Full redundancy again: lose as many *other* devices as the layout tolerates.
    const others = spec.level === 10 ? [0] : spec.level === 60 ? [0, 3, 4, 5] : spec.level === 6 ? [1, 2] : [2];
    const saved = others.map((s) => f.paths[s]);
    for (const s of others) await rename(f.paths[s], `${f.paths[s]}.gone`);
    arr = await openArray(f);
    for (const s of others) assert.equal(arr.status()[s].state, 'MISSING');
    await readEverything(arr, f, r, { verify: true });
    await readEverything(arr, f, r, { verify: false });
    await arr.close();
    for (const p of saved) await rename(`${p}.gone`, p);
  });
}

test('rebuild interrupted halfway resumes from the persisted cursor after reopen', async (t) => {
  const f = await fixture(4);
  t.after(() => f.cleanup());
  const r = rng(7);
  let arr = await createArray(f, { level: 5, devices: 4 });
  await fillRows(arr, f, r);
  await arr.close();
  await rm(f.paths[2]);
  arr = await openArray(f, { checkpoint: 2 });
  const newPath = join(f.dir, 'n2.img');
  const crash = new Error('simulated crash');
  await assert.rejects(
    arr.replace(2, newPath, rowsInUse(f), (done) => {
      if (done === 5) throw crash;
    }),
    crash,
  );
  f.paths[2] = newPath;
  assert.equal(arr.rebuildPending, true);
  assert.equal(arr.status()[2].state, 'REBUILDING');
  // A row written while rebuilding goes to the new device directly.
  const fresh = randBuf(r, 2 * STRIP + 11);
  f.expected.set(6, { data: fresh, height: await arr.writeRow(6, fresh) });
  await readEverything(arr, f, r, { verify: true });
  await arr.close();

  arr = await openArray(f, { checkpoint: 2 });
  assert.equal(arr.rebuildPending, true);
  assert.equal(arr.status()[2].state, 'REBUILDING');
  await readEverything(arr, f, r, { verify: true });
  const calls: number[] = [];
  await arr.resumeRebuild(rowsInUse(f), (d) => calls.push(d));
  // Checkpoints every 2 rows, crash after the 5th: the cursor was saved after row index 3.
  assert.equal(calls[0], 5, `resumed at ${calls[0]}`);
  assert.equal(calls.at(-1), f.expected.size);
  assert.equal(arr.rebuildPending, false);
  assert.equal(arr.status()[2].state, 'ONLINE');
  await arr.close();
  await rm(f.paths[0]);
  arr = await openArray(f);
  await readEverything(arr, f, r, { verify: true });
  await arr.close();
});

test('a hot spare takes over a device that faults on write, then rebuilds', async (t) => {
  const f = await fixture(3);
  t.after(() => f.cleanup());
  const r = rng(9);
  const spare = join(f.dir, 'spare.img');
  let arr = await createArray(f, { level: 5, devices: 3 }, { spares: [spare] });
  assert.equal(arr.status().at(-1)!.state, 'SPARE');
  await arr.writeHeaderArea(Buffer.from('key header v1'));
  await fillRows(arr, f, r, 5);
  const faulted: number[] = [];
  arr.onFault = (slot) => faulted.push(slot);
  await f.setRules([{ path: basename(f.paths[1]), op: 'write', error: 'EIO', from: DATA_START }]);
  const data = randBuf(r, arr.rowDataBytes);
  f.expected.set(5, { data, height: await arr.writeRow(5, data) });
  await f.setRules([]);
  assert.deepEqual(faulted, [1]);
  let st = arr.status();
  assert.equal(st[1].state, 'REBUILDING');
  assert.equal(st[1].path, spare);
  assert.equal(st.length, 3, 'spare list is empty now');
  assert.equal(arr.rebuildPending, true);
  await arr.resumeRebuild(rowsInUse(f));
  assert.equal(arr.status()[1].state, 'ONLINE');
  await arr.close();

  // The old device is stale now; the spare is a member wherever it is listed.
  await rm(f.paths[0]);
  arr = await RaidArray.open({ devices: f.paths, spares: [spare], openDevice: f.openDevice, log: f.log });
  st = arr.status();
  assert.equal(st[1].path, spare);
  assert.equal(st[1].state, 'ONLINE');
  assert.equal(st[0].state, 'MISSING');
  assert.ok(f.logs.some((l) => l.includes(f.paths[1]) && l.includes('no longer a member')));
  await readEverything(arr, f, r, { verify: true });
  const hdr = await arr.readHeaderArea();
  assert.equal(hdr.length, 6);
  assert.ok(hdr[0] === null && hdr[1] === null, 'missing device has no header copies');
  for (const i of [2, 3]) assert.equal(hdr[i]?.subarray(0, 14).toString('latin1'), 'key header v1\0', 'spare got the volume header');
  await arr.close();
});

test('a device missed while the array was written is stale when it comes back', async (t) => {
  const f = await fixture(3);
  t.after(() => f.cleanup());
  const r = rng(11);
  let arr = await createArray(f, { level: 1, devices: 3 });
  await fillRows(arr, f, r, 3);
  await arr.close();
  await rename(f.paths[2], `${f.paths[2]}.away`);
  arr = await openArray(f);
  assert.equal(arr.status()[2].state, 'MISSING');
  const data = randBuf(r, 999);
  f.expected.set(0, { data, height: await arr.writeRow(0, data) }); // row 0 rewritten without d2
  await arr.close();
  await rename(`${f.paths[2]}.away`, f.paths[2]);
  arr = await openArray(f);
  assert.equal(arr.status()[2].state, 'FAULTED', 'stale device is not trusted');
  assert.ok(f.logs.some((l) => l.includes('stale')));
  // Without the stale copy, reads of row 0 can never see the old bytes, even without verify.
  await readEverything(arr, f, r, { verify: false, ranges: 4 });
  // Re-adding the same file rebuilds it.
  await arr.replace(f.paths[2], f.paths[2], rowsInUse(f));
  assert.equal(arr.degraded, false);
  await arr.close();
  await rm(f.paths[0]);
  await rm(f.paths[1]);
  arr = await openArray(f);
  await readEverything(arr, f, r, { verify: true });
  await arr.close();
});

test('activateSpare fills a slot that was missing at open', async (t) => {
  const f = await fixture(4);
  t.after(() => f.cleanup());
  const r = rng(13);
  const spare = join(f.dir, 's.img');
  let arr = await createArray(f, { level: 6, devices: 4 }, { spares: [spare] });
  await fillRows(arr, f, r, 4);
  await arr.close();
  await rm(f.paths[3]);
  arr = await RaidArray.open({ devices: f.paths, spares: [spare], openDevice: f.openDevice, log: f.log });
  assert.equal(arr.status()[3].state, 'MISSING');
  assert.equal(await arr.activateSpare(3), true);
  assert.equal(arr.status()[3].state, 'REBUILDING');
  await arr.resumeRebuild(rowsInUse(f));
  assert.equal(arr.degraded, false);
  await readEverything(arr, f, r, { verify: true });
  await arr.close();
});

test('replace refuses another volume’s device without costing the old one; proactive replace works', async (t) => {
  const f = await fixture(3);
  const g = await fixture(2, 'other');
  t.after(() => Promise.all([f.cleanup(), g.cleanup()]));
  const r = rng(17);
  const foreign = await RaidArray.create({ volumeId: Buffer.alloc(16, 1), layout: { level: 1, devices: 2, stripSize: STRIP }, devices: g.paths, deviceSize: 18 * 1024 * 1024, openDevice: g.openDevice });
  await foreign.close();
  const arr = await createArray(f, { level: 5, devices: 3 });
  await fillRows(arr, f, r, 4);
  await assert.rejects(arr.replace(0, g.paths[0], rowsInUse(f)), /belongs to another hoardfs volume; use --force/);
  assert.equal(arr.status()[0].state, 'ONLINE');
  assert.equal(arr.degraded, false);
  // Proactive: swap a healthy member for a new file, then lose another one.
  const fresh = join(f.dir, 'fresh.img');
  await arr.replace(f.paths[0], fresh, rowsInUse(f));
  f.paths[0] = fresh;
  assert.equal(arr.degraded, false);
  await arr.faultDevice(1, 'test');
  await readEverything(arr, f, r, { verify: true });
  await arr.close();
});
