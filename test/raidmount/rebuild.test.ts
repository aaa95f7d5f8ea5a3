// Rebuild on real mounts through the CLI: replace on a mounted volume (throttled, killed halfway,
// resumed on the next mount), replace on an unmounted one, writes made while degraded, and a hot
// spare that takes over a device failing at run time. Each ends by failing another device and
// reading everything: the volume is fully redundant again.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { hoardfs, mounted } from '../helpers.ts';
import { cleanupAll, dataSet, processGone, raidVolume, readAll, waitFor, writeFiles, type RaidVolume, type Status } from './helpers.ts';

after(cleanupAll);

function log(rv: RaidVolume): string {
  return fs.readFileSync(join(rv.v.dir, 'daemon.log'), 'utf8');
}

function slot(st: Status, s: number) {
  const d = st.devices.find((x) => x.slot === s);
  assert.ok(d, JSON.stringify(st.devices));
  return d;
}

test('replace on a mounted volume: throttled, SIGKILL halfway, resumes on mount, then survives another failure', { timeout: 600_000 }, async () => {
  // 64 KiB chunks give 64 KiB strips, so a few MiB per device are enough rows for the rebuild
  // cursor (saved every 64 rows) to be persisted before the kill.
  const files = dataSet(7, 12);
  const rv = await raidVolume({ name: '5', level: 5, devices: 3 }, { files, extra: ['--chunk-min', '16K', '--chunk-avg', '32K', '--chunk-max', '64K'] });
  assert.equal(rv.stripSize, 64 * 1024);
  fs.rmSync(rv.devices[1]);
  await rv.mount();
  assert.match(log(rv), /DEGRADED/);
  assert.equal((await rv.status()).state, 'DEGRADED');
  // Written while slot 1 is missing: only parity protects these until the rebuild.
  const degraded = new Map([...dataSet(8, 2)].map(([n, b]) => [`degraded/${n}`, b]));
  writeFiles(rv.v.mnt, degraded);
  const all = new Map([...files, ...degraded]);
  assert.deepEqual(readAll(rv.v.mnt, all, 'degraded').eio, []);

  const fresh = join(rv.v.root, 'n1.img');
  const replacing = hoardfs(['replace', rv.v.dir, rv.devices[1], fresh, '--max-speed', '512K'], { env: rv.env });
  let seen: Status | undefined;
  // Killed once more than 64 rows (the checkpoint interval) are done, well before the end.
  await waitFor('the rebuild to pass 66 rows', async () => {
    const st = await rv.status();
    const d = slot(st, 1);
    if (d.state === 'REBUILDING' && d.rebuild && d.rebuild.percent >= 20 && !seen) {
      seen = st;
      const text = await rv.statusText();
      assert.match(text, /REBUILDING \d+%/);
      assert.match(text, /\d+\/\d+ rows, [\d.]+ (KiB|MiB)\/s \(max 512 KiB\/s\), ETA \d+s/, text);
    }
    return d.state === 'REBUILDING' && (d.rebuild?.done ?? 0) >= 66;
  }, 120_000, 100);
  assert.ok(seen, 'status never showed the rebuild in progress');
  const r = slot(seen, 1).rebuild!;
  assert.ok(r.bytesPerSec! > 64 * 1024 && r.bytesPerSec! <= 1.1 * 512 * 1024, `rebuild speed ${r.bytesPerSec} B/s with --max-speed 512K`);
  assert.ok(r.etaSeconds !== undefined && r.etaSeconds > 0);
  const pid = rv.daemonPid();
  process.kill(pid, 'SIGKILL');
  await waitFor('the daemon to die', () => processGone(pid), 10_000, 50);
  const rep = await replacing;
  assert.notEqual(rep.code, 0, 'replace claimed success though its daemon was killed');
  // The progress bar on stderr (not a terminal: a line per 10%) shows speed and ETA.
  assert.match(rep.stderr, /rebuild \[[#.]+\] [\d.]+% \d+\/\d+ [\d.]+ (KiB|MiB)\/s ETA \d+s/, rep.stderr);
  await hoardfs(['umount', rv.v.mnt]);
  assert.equal(mounted(rv.v.mnt), false);

  // Unmounted: the new device is in slot 1, REBUILDING from the saved cursor.
  const off = await rv.status();
  const o1 = slot(off, 1);
  assert.equal(o1.state, 'REBUILDING');
  assert.equal(o1.path, fresh);
  assert.ok(o1.rebuild && o1.rebuild.done >= 64, `the rebuild cursor was not persisted: ${JSON.stringify(o1)}`);
  assert.match(await rv.statusText(), /REBUILDING \d+%.*not running/);

  const logLen = log(rv).length;
  await rv.mount();
  await waitFor('the resumed rebuild to finish', async () => (await rv.status()).devices.every((d) => d.state === 'ONLINE'), 120_000);
  const l = log(rv).slice(logLen);
  assert.match(l, /resuming the interrupted rebuild/);
  assert.match(l, /rebuild complete/);
  assert.deepEqual(readAll(rv.v.mnt, all, 'after the rebuild').eio, []);
  await rv.umount();
  const cfg = JSON.parse(fs.readFileSync(join(rv.v.dir, 'hoardfs.json'), 'utf8'));
  assert.equal(cfg.devices[1], fresh);

  // Fully redundant again: lose a different device, everything (also what was written while
  // degraded) still reads right.
  fs.rmSync(rv.devices[0]);
  await rv.mount();
  assert.deepEqual(readAll(rv.v.mnt, all, 'rebuilt, then slot 0 lost').eio, []);
  const st = await rv.status();
  assert.equal(slot(st, 0).state, 'MISSING');
  assert.equal(slot(st, 1).state, 'ONLINE');
  assert.deepEqual(st.devices.map((d) => d.checksumErrors + d.readErrors), [0, 0, 0]);
  await rv.umount();
  await rv.cleanup();
});

test('replace on an unmounted volume (RAID 6), then two other devices fail', { timeout: 600_000 }, async () => {
  const files = dataSet(9, 4);
  const rv = await raidVolume({ name: '6', level: 6, devices: 4 }, { files });
  // A device replaced by zeros (a new, blank disk in its place).
  const size = fs.statSync(rv.devices[2]).size;
  fs.truncateSync(rv.devices[2], 0);
  fs.truncateSync(rv.devices[2], size);
  const fresh = join(rv.v.root, 'n2.img');
  const r = await rv.cli(['replace', rv.v.dir, rv.devices[2], fresh]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /n2\.img replaced .*d2\.img; rebuild complete/);
  assert.match(r.stderr, /rebuild \[#+\] 100\.0% (\d+)\/\1 [\d.]+ (KiB|MiB)\/s/, r.stderr);
  const st = await rv.status();
  assert.deepEqual(st.devices.map((d) => d.state), ['ONLINE', 'ONLINE', 'ONLINE', 'ONLINE']);
  assert.equal(slot(st, 2).path, fresh);
  fs.rmSync(rv.devices[0]);
  fs.rmSync(rv.devices[3]);
  await rv.mount();
  assert.deepEqual(readAll(rv.v.mnt, files, 'rebuilt offline, then slots 0 and 3 lost').eio, []);
  await rv.umount();
  await rv.cleanup();
});

test('hot spare: a device failing writes while mounted is replaced by the spare and rebuilt', { timeout: 600_000 }, async () => {
  const files = dataSet(11, 3);
  const rv = await raidVolume({ name: '5', level: 5, devices: 3 }, { files, spares: 1 });
  await rv.mount();
  const before = await rv.status();
  assert.deepEqual(before.devices.map((d) => [d.slot, d.state]), [[0, 'ONLINE'], [1, 'ONLINE'], [2, 'ONLINE'], [null, 'SPARE']]);
  assert.match(await rv.statusText(), /\n\s+-\s+SPARE\s+0\s+0\s+0\s+\S*s0\.img/);
  // Slot 1 starts failing every write to its row area.
  rv.setRules([{ path: 'd1.img', op: 'write', error: 'EIO', from: rv.dataStart }]);
  const more = new Map([...dataSet(12, 1)].map(([n, b]) => [`late/${n}`, b]));
  writeFiles(rv.v.mnt, more); // fsynced: the rows are written, d1 fails, the spare takes its slot
  const all = new Map([...files, ...more]);
  await waitFor('the spare to be rebuilt', async () => {
    const st = await rv.status();
    return st.devices.length === 3 && st.devices.every((d) => d.state === 'ONLINE');
  }, 120_000);
  const st = await rv.status();
  assert.equal(slot(st, 1).path, rv.spares[0]);
  assert.ok(!st.devices.some((d) => d.path === rv.devices[1]), 'the failed device is still listed');
  assert.match(log(rv), /FAULTED: write error/);
  assert.match(log(rv), /spare .*s0\.img takes over slot 1/);
  assert.deepEqual(readAll(rv.v.mnt, all, 'after the spare took over').eio, []);
  await rv.umount();
  const cfg = JSON.parse(fs.readFileSync(join(rv.v.dir, 'hoardfs.json'), 'utf8'));
  assert.deepEqual(cfg.spares, []);
  assert.equal(cfg.devices[1], rv.spares[0]);
  // Redundant again: lose slot 0; the spare's rebuilt strips carry it.
  rv.setRules([]);
  fs.rmSync(rv.devices[0]);
  await rv.mount();
  assert.deepEqual(readAll(rv.v.mnt, all, 'spare rebuilt, then slot 0 lost').eio, []);
  await rv.umount();
  await rv.cleanup();
});
