// Mount, unmount, remount, SIGKILL, fsck, gc and the errors a user gets for bad requests.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3-multiple-ciphers';
import { hoardfs, makeVolume, mounted, randomData, sh, type TestVolume } from '../helpers.ts';

const vols: TestVolume[] = [];
after(async () => {
  for (const v of vols) await v.cleanup();
});

async function fresh(args: string[] = [], encrypted = true): Promise<TestVolume> {
  const v = await makeVolume(args, { encrypted });
  vols.push(v);
  return v;
}

test('data survives umount and mount; umount flushes buffered writes', async () => {
  const v = await fresh();
  await v.mount();
  const data = randomData(5 * 1024 * 1024 + 3, 9);
  fs.writeFileSync(join(v.mnt, 'f'), data);
  fs.mkdirSync(join(v.mnt, 'd'));
  fs.symlinkSync('../f', join(v.mnt, 'd/l'));
  await v.umount();
  assert.equal(mounted(v.mnt), false);
  await v.mount();
  assert.ok(fs.readFileSync(join(v.mnt, 'd/l')).equals(data));
  await v.umount();
});

test('bad mount requests get one clear line and change nothing', async () => {
  const v = await fresh();
  const cases: [string[], RegExp][] = [
    [['mount', join(v.root, 'nope'), v.mnt, ...v.secretArgs], /not a hoardfs volume/],
    [['mount', v.dir, join(v.root, 'missing'), ...v.secretArgs], /does not exist/],
    [['mount', v.dir, v.passFile, ...v.secretArgs], /not a directory/],
    [['mount', v.dir, v.root, ...v.secretArgs], /not empty/],
    [['mount', v.dir, v.mnt, '--bogus'], /Unknown option|unknown option/i],
    [['mount', v.dir], /missing arguments/],
  ];
  for (const [args, re] of cases) {
    const r = await hoardfs(args);
    assert.notEqual(r.code, 0, args.join(' '));
    assert.match(r.stderr, re, args.join(' '));
    assert.ok(r.stderr.trim().split('\n').length <= 2, r.stderr);
  }
  const wrong = join(v.root, 'wrong');
  fs.writeFileSync(wrong, 'not the passphrase');
  const r = await hoardfs(['mount', v.dir, v.mnt, '--passphrase-file', wrong]);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /no key slot matches/);
  assert.equal(mounted(v.mnt), false);
  await v.mount();
  const again = await hoardfs(['mount', v.dir, v.mnt, ...v.secretArgs]);
  assert.match(again.stderr, /already mounted/);
  const other = join(v.root, 'mnt2');
  fs.mkdirSync(other);
  const twice = await hoardfs(['mount', v.dir, other, ...v.secretArgs]);
  assert.match(twice.stderr, /already mounted at/);
  await v.umount();
  const notMounted = await hoardfs(['umount', v.mnt]);
  assert.match(notMounted.stderr, /is not mounted/);
});

test('SIGKILL of the daemon: fsynced files are intact, fsck is clean', async () => {
  const v = await fresh();
  for (let round = 0; round < 3; round++) {
    await v.mount();
    const synced = randomData(1024 * 1024 + round, 100 + round);
    const fd = fs.openSync(join(v.mnt, `synced${round}`), 'w');
    fs.writeSync(fd, synced);
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fs.writeFileSync(join(v.mnt, `unsynced${round}`), randomData(3 * 1024 * 1024, round));
    const lock = JSON.parse(fs.readFileSync(join(v.dir, 'lock'), 'utf8'));
    process.kill(lock.pid, 'SIGKILL');
    for (let i = 0; i < 100; i++) {
      try {
        process.kill(lock.pid, 0);
        await new Promise((r) => setTimeout(r, 50));
      } catch {
        break;
      }
    }
    await sh(`fusermount3 -uz ${v.mnt}`);
    const f = await hoardfs(['fsck', v.dir, ...v.secretArgs]);
    assert.equal(f.code, 0, f.stdout + f.stderr);
    assert.match(f.stdout, /clean/);
    await v.mount();
    for (let r = 0; r <= round; r++) assert.ok(fs.readFileSync(join(v.mnt, `synced${r}`)).equals(randomData(1024 * 1024 + r, 100 + r)), `round ${r}`);
    await v.umount();
  }
});

test('fsck finds planted damage and --repair fixes it', async () => {
  const v = await fresh([], false);
  await v.mount();
  fs.writeFileSync(join(v.mnt, 'a'), randomData(500_000, 1));
  fs.writeFileSync(join(v.mnt, 'b'), randomData(500_000, 2));
  await v.umount();
  const db = new Database(join(v.dir, 'meta.db'));
  db.exec('UPDATE chunks SET refs = refs + 5 WHERE id = (SELECT min(id) FROM chunks)');
  db.exec('DELETE FROM chunks WHERE id = (SELECT max(id) FROM chunks)');
  db.close();
  const bad = await hoardfs(['fsck', v.dir]);
  assert.equal(bad.code, 1);
  assert.match(bad.stdout, /refcount/);
  assert.match(bad.stdout, /missing chunk/);
  const fix = await hoardfs(['fsck', v.dir, '--repair']);
  assert.equal(fix.code, 0, fix.stderr);
  const clean = await hoardfs(['fsck', v.dir]);
  assert.equal(clean.code, 0, clean.stdout);
});

test('gc reclaims the chunks of deleted files, mounted or not', async () => {
  const v = await fresh();
  await v.mount();
  fs.writeFileSync(join(v.mnt, 'a'), randomData(4 * 1024 * 1024, 5));
  await sh(`sync ${v.mnt}/a`);
  const s1 = JSON.parse((await hoardfs(['stats', v.dir, '--json'])).stdout);
  assert.ok(s1.chunks > 0);
  fs.unlinkSync(join(v.mnt, 'a'));
  const g = await hoardfs(['gc', v.dir, '--json']);
  assert.equal(g.code, 0, g.stderr);
  assert.ok(JSON.parse(g.stdout).chunks >= s1.chunks);
  const s2 = JSON.parse((await hoardfs(['stats', v.dir, '--json'])).stdout);
  assert.equal(s2.chunks, 0);
  await v.umount();
  const offline = await hoardfs(['gc', v.dir, ...v.secretArgs]);
  assert.equal(offline.code, 0, offline.stderr);
});
