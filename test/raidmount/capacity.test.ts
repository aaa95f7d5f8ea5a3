// Full devices (ENOSPC to the writer, nothing corrupted, space back after delete + gc), and what
// `hoardfs status` and `hoardfs mount` tell a user about a degraded array.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { BIN, hoardfs, randomData, sh } from '../helpers.ts';
import { MiB, cleanupAll, dataSet, raidVolume, readAll, waitFor } from './helpers.ts';

after(cleanupAll);

test('devices fill up: the writer gets ENOSPC, written files stay intact, delete + gc makes room again', { timeout: 600_000 }, async () => {
  // 40 MiB devices: 17 MiB of superblocks and key header, 23 MiB of rows.
  const rv = await raidVolume({ name: '1', level: 1, devices: 2 }, { deviceSize: '40M' });
  const st0 = await rv.status();
  assert.ok(st0.capacityBytes >= 20 * MiB && st0.capacityBytes <= 23 * MiB, `capacity ${st0.capacityBytes}`);
  await rv.mount();
  const mnt = rv.v.mnt;
  const written = new Map<string, Buffer>();
  let enospc: NodeJS.ErrnoException | undefined;
  for (let i = 0; i < 40 && !enospc; i++) {
    const data = randomData(MiB, 500 + i);
    const fd = fs.openSync(join(mnt, `f${i}`), 'w');
    try {
      fs.writeSync(fd, data);
      fs.fsyncSync(fd);
      written.set(`f${i}`, data);
    } catch (e) {
      enospc = e as NodeJS.ErrnoException;
    } finally {
      fs.closeSync(fd);
    }
  }
  assert.ok(enospc, 'wrote 40 MiB onto 23 MiB of space without an error');
  assert.equal(enospc.code, 'ENOSPC', String(enospc));
  assert.ok(written.size >= 10, `only ${written.size} MiB fit`);
  fs.rmSync(join(mnt, `f${written.size}`), { force: true });
  // dd hears it the same way.
  const dd = await sh(`dd if=/dev/zero of=${mnt}/dd bs=64K count=64 conv=fsync 2>&1; echo "exit $?"`);
  assert.match(dd.stdout, /No space left on device/);
  assert.doesNotMatch(dd.stdout, /exit 0/);
  fs.rmSync(join(mnt, 'dd'), { force: true });
  assert.deepEqual(readAll(mnt, written, 'full').eio, []);
  await rv.umount();
  await rv.mount();
  assert.deepEqual(readAll(mnt, written, 'full, remounted').eio, []);

  // Delete half, gc, and the space can be written again.
  const names = [...written.keys()];
  for (const n of names.slice(0, Math.ceil(names.length / 2))) {
    fs.rmSync(join(mnt, n));
    written.delete(n);
  }
  const gc = await rv.cli(['gc', rv.v.dir, '--json']);
  assert.equal(gc.code, 0, gc.stderr);
  assert.ok(JSON.parse(gc.stdout).rows > 0, gc.stdout);
  const again = randomData(4 * MiB, 999);
  const fd = fs.openSync(join(mnt, 'again'), 'w');
  fs.writeSync(fd, again);
  fs.fsyncSync(fd);
  fs.closeSync(fd);
  written.set('again', again);
  assert.deepEqual(readAll(mnt, written, 'after gc').eio, []);
  await rv.umount();
  await rv.mount();
  assert.deepEqual(readAll(mnt, written, 'after gc, remounted').eio, []);
  await rv.umount();
  await rv.cleanup();
});

function row(text: string, slot: string): string[] {
  const line = text.split('\n').find((l) => l.trim().split(/\s+/)[0] === slot);
  assert.ok(line, `no status line for slot ${slot}:\n${text}`);
  return line.trim().split(/\s+/);
}

test('degraded mount: -f says DEGRADED on stderr, daemon.log too; status text and JSON show every state and counter', { timeout: 600_000 }, async () => {
  const files = dataSet(21, 3);
  const rv = await raidVolume({ name: '6', level: 6, devices: 4 }, { files, spares: 1 });
  const healthy = await rv.statusText();
  assert.match(healthy, /state: ONLINE/);
  assert.match(healthy, /level: RAID 6 over 4 devices, strip \d+ KiB/);
  assert.match(healthy, /layout: 2 data \+ P\+Q per row, survives any 2 lost devices/);
  assert.match(healthy, /capacity: [\d.]+ MiB usable, [\d.]+ MiB free/);
  assert.match(healthy, /SLOT\s+STATE\s+READ\s+WRITE\s+CKSUM\s+DEVICE/);
  assert.match(healthy, /errors: no known data errors/);

  // Slot 0 gone, slot 1 unreadable in its row area: two failures, RAID 6 takes both.
  fs.rmSync(rv.devices[0]);
  rv.setRules([{ path: 'd1.img', op: 'read', error: 'EIO', from: rv.dataStart }]);
  const child = spawn(process.execPath, [BIN, 'mount', rv.v.dir, rv.v.mnt, '-f', ...rv.v.secretArgs], { env: { ...process.env, ...rv.env }, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<number>((r) => child.on('exit', (c) => r(c ?? 128)));
  try {
    await waitFor('the foreground mount', () => /mounted at/.test(stderr), 60_000, 100);
    assert.match(stderr, /volume is DEGRADED: \S*d0\.img MISSING/);
    assert.deepEqual(readAll(rv.v.mnt, files, 'degraded -f').eio, []);
    const text = await rv.statusText();
    assert.match(text, /state: DEGRADED/);
    assert.deepEqual(row(text, '0').slice(1, 5), ['MISSING', '0', '0', '0']);
    const s1 = row(text, '1');
    assert.equal(s1[1], 'ONLINE');
    assert.ok(Number(s1[2]) > 0, `no read errors shown for slot 1: ${s1.join(' ')}`);
    assert.deepEqual(row(text, '2').slice(1, 5), ['ONLINE', '0', '0', '0']);
    assert.deepEqual(row(text, '-').slice(1, 5), ['SPARE', '0', '0', '0']);
    const st = await rv.status();
    assert.equal(st.state, 'DEGRADED');
    assert.equal(st.level, 6);
    assert.equal(st.layout.devices, 4);
    assert.ok(st.capacityBytes > 0 && st.freeBytes > 0 && st.freeBytes < st.capacityBytes);
    assert.deepEqual(st.devices.map((d) => d.state), ['MISSING', 'ONLINE', 'ONLINE', 'ONLINE', 'SPARE']);
    assert.ok(st.devices[1].readErrors > 0);
    const u = await hoardfs(['umount', rv.v.mnt]);
    assert.equal(u.code, 0, u.stderr);
    assert.equal(await exited, 0);
  } finally {
    child.kill('SIGKILL');
  }

  // Unmounted, with slot 1 truncated as well: status opens the volume itself.
  rv.setRules([]);
  fs.truncateSync(rv.devices[1], 20 * MiB);
  const off = await rv.statusText();
  assert.match(off, /state: DEGRADED/);
  assert.equal(row(off, '0')[1], 'MISSING');
  assert.equal(row(off, '1')[1], 'FAULTED');
  // Background mount: the warning goes to daemon.log.
  const logLen = fs.existsSync(join(rv.v.dir, 'daemon.log')) ? fs.statSync(join(rv.v.dir, 'daemon.log')).size : 0;
  await rv.mount();
  const log = fs.readFileSync(join(rv.v.dir, 'daemon.log'), 'utf8').slice(logLen);
  assert.match(log, /volume is DEGRADED: .*d0\.img MISSING, .*d1\.img FAULTED/);
  assert.deepEqual(readAll(rv.v.mnt, files, 'two devices lost').eio, []);
  await rv.umount();
  await rv.cleanup();
});
