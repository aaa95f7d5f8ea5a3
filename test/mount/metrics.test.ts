// `hoardfs mount --metrics HOST:PORT` serves Prometheus text; `hoardfs stats` shows live
// throughput and per-operation latency percentiles.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { hoardfs, makeVolume, randomData, sh, type TestVolume } from '../helpers.ts';

const vols: TestVolume[] = [];
after(async () => {
  for (const v of vols) await v.cleanup();
});

function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => res(port));
    });
  });
}

/** How many requests of one kind the daemon has answered, from its Prometheus endpoint. */
async function opCount(port: number, op: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  return Number(new RegExp(`^hoardfs_op_latency_seconds_count\\{op="${op}"\\} (\\d+)$`, 'm').exec(text)?.[1]);
}

test('metrics endpoint and live stats', async () => {
  const v = await makeVolume();
  vols.push(v);
  const port = await freePort();
  await v.mount(['--metrics', `127.0.0.1:${port}`]);
  const data = randomData(3 * 1024 * 1024, 5);
  const fd = fs.openSync(join(v.mnt, 'f'), 'w');
  fs.writeSync(fd, data);
  fs.fsyncSync(fd);
  fs.closeSync(fd);
  fs.statSync(join(v.mnt, 'f'));
  assert.ok(fs.readFileSync(join(v.mnt, 'f')).equals(data));

  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /text\/plain/);
  const text = await res.text();
  const count = (op: string) => Number(new RegExp(`^hoardfs_op_latency_seconds_count\\{op="${op}"\\} (\\d+)$`, 'm').exec(text)?.[1]);
  for (const op of ['write', 'read', 'fsync', 'lookup']) assert.ok(count(op) > 0, `${op} count in\n${text.slice(0, 2000)}`);
  assert.match(text, /^# TYPE hoardfs_op_latency_seconds histogram$/m);
  assert.match(text, /^hoardfs_op_latency_seconds_bucket\{op="write",le="\+Inf"\} \d+$/m);
  const written = Number(/^hoardfs_written_bytes_total (\d+)$/m.exec(text)?.[1]);
  assert.ok(written >= data.length, `written ${written}`);
  assert.match(text, /^hoardfs_chunk_cache_hit_ratio [\d.e-]+$/m);
  assert.equal((await fetch(`http://127.0.0.1:${port}/nope`)).status, 404);

  const r = await hoardfs(['stats', v.dir, '--json']);
  assert.equal(r.code, 0, r.stderr);
  const s = JSON.parse(r.stdout);
  assert.ok(s.latency.write.count > 0 && s.latency.write.p50us > 0 && s.latency.write.p99us >= s.latency.write.p50us);
  assert.ok(s.latency.fsync.count > 0);
  assert.equal(typeof s.throughput.writeBytesPerSec, 'number');
  const human = await hoardfs(['stats', v.dir]);
  assert.match(human.stdout, /latency:/);
  assert.match(human.stdout, /^\s+write\s+\d+/m);
  await v.umount();
});

test('writes skip the security.capability round trip until a file capability exists; setcap keeps working', async () => {
  const v = await makeVolume();
  vols.push(v);
  const port = await freePort();
  const others = () => opCount(port, 'other');
  const hundredWrites = (name: string) => {
    const fd = fs.openSync(join(v.mnt, name), 'w');
    for (let i = 0; i < 100; i++) fs.writeSync(fd, randomData(4096, i), 0, 4096, i * 4096);
    fs.closeSync(fd);
  };
  await v.mount(['--metrics', `127.0.0.1:${port}`]);
  fs.copyFileSync('/usr/bin/true', join(v.mnt, 'tool'));
  let before = await others();
  hundredWrites('a');
  // getxattr is counted under "other": the kernel asks it before every write unless C answers.
  assert.ok((await others()) - before < 10, `getxattr round trips for 100 writes: ${(await others()) - before}`);

  const set = await sh(`setcap cap_net_raw+ep ${v.mnt}/tool && getcap ${v.mnt}/tool`);
  assert.equal(set.code, 0, set.stderr);
  assert.match(set.stdout, /cap_net_raw[=+]ep/);
  before = await others();
  hundredWrites('b');
  assert.ok((await others()) - before >= 100, 'with a file capability on the volume, the daemon answers');
  await v.umount();

  await v.mount(['--metrics', `127.0.0.1:${port}`]);
  const get = await sh(`getcap ${v.mnt}/tool`);
  assert.match(get.stdout, /cap_net_raw[=+]ep/, 'the capability survives a remount');
  before = await others();
  hundredWrites('c');
  assert.ok((await others()) - before >= 100, 'a volume holding a file capability is mounted with the lookup in the daemon');
  await v.umount();
});

test('the kernel remembers missing names, and forgets them when they are created, renamed to or linked', async () => {
  const v = await makeVolume();
  vols.push(v);
  const port = await freePort();
  const lookups = () => opCount(port, 'lookup');
  const missing = (p: string) => assert.throws(() => fs.statSync(p), (e: NodeJS.ErrnoException) => e.code === 'ENOENT');
  await v.mount(['--metrics', `127.0.0.1:${port}`]);
  const p = (n: string) => join(v.mnt, n);
  const before = await lookups();
  for (let i = 0; i < 200; i++) missing(p('nope'));
  assert.ok((await lookups()) - before <= 2, `200 stats of one missing name asked the daemon ${(await lookups()) - before} times`);
  // Every way a remembered-missing name can come into being, seen at once.
  missing(p('made'));
  fs.writeFileSync(p('made'), 'x');
  assert.equal(fs.readFileSync(p('made'), 'utf8'), 'x');
  missing(p('dir'));
  fs.mkdirSync(p('dir'));
  assert.ok(fs.statSync(p('dir')).isDirectory());
  missing(p('moved'));
  fs.renameSync(p('made'), p('moved'));
  assert.equal(fs.readFileSync(p('moved'), 'utf8'), 'x');
  missing(p('made'));
  missing(p('linked'));
  fs.linkSync(p('moved'), p('linked'));
  assert.equal(fs.statSync(p('linked')).nlink, 2);
  missing(p('sym'));
  fs.symlinkSync('moved', p('sym'));
  assert.equal(fs.readFileSync(p('sym'), 'utf8'), 'x');
  fs.unlinkSync(p('linked'));
  missing(p('linked'));
  await v.umount();
});

test('closing a read-only descriptor costs no FLUSH round trip; closing a writer still does (deferred errors)', async () => {
  const v = await makeVolume();
  vols.push(v);
  const port = await freePort();
  const flushes = () => opCount(port, 'flush');
  await v.mount(['--metrics', `127.0.0.1:${port}`]);
  const p = join(v.mnt, 'f');
  const data = randomData(10_000, 3);
  let before = await flushes();
  for (let i = 0; i < 50; i++) fs.writeFileSync(p, data);
  assert.ok((await flushes()) - before >= 50, 'every writer close asks the daemon');
  before = await flushes();
  for (let i = 0; i < 50; i++) assert.ok(fs.readFileSync(p).equals(data));
  assert.ok((await flushes()) - before < 5, `read-only closes asked the daemon ${(await flushes()) - before} times`);
  await v.umount();
});
