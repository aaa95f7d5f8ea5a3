// The POSIX table: the same calls on tmpfs (the reference) and on a real hoardfs mount; results,
// errnos included, must be identical.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { makeVolume, tempDir, type TestVolume } from '../helpers.ts';

type Step = [string, (d: string) => unknown];

function errno(f: () => unknown): unknown {
  try {
    const r = f();
    return r === undefined ? 'ok' : r;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code ?? String(e);
  }
}

const long = (n: number) => 'x'.repeat(n);

const steps: Step[] = [
  ['mkdir a', (d) => fs.mkdirSync(join(d, 'a'))],
  ['mkdir a again', (d) => fs.mkdirSync(join(d, 'a'))],
  ['rmdir missing', (d) => fs.rmdirSync(join(d, 'nope'))],
  ['write a/f', (d) => fs.writeFileSync(join(d, 'a/f'), 'hello')],
  ['read a/f', (d) => fs.readFileSync(join(d, 'a/f'), 'utf8')],
  ['mkdir under a file', (d) => fs.mkdirSync(join(d, 'a/f/x'))],
  ['rmdir non-empty', (d) => fs.rmdirSync(join(d, 'a'))],
  ['unlink a directory', (d) => fs.unlinkSync(join(d, 'a'))],
  ['rmdir a file', (d) => fs.rmdirSync(join(d, 'a/f'))],
  ['O_EXCL on existing', (d) => fs.closeSync(fs.openSync(join(d, 'a/f'), 'wx'))],
  ['readlink a file', (d) => fs.readlinkSync(join(d, 'a/f'))],
  ['symlink', (d) => fs.symlinkSync('f', join(d, 'a/l'))],
  ['readlink', (d) => fs.readlinkSync(join(d, 'a/l'))],
  ['read through symlink', (d) => fs.readFileSync(join(d, 'a/l'), 'utf8')],
  ['symlink loop', (d) => (fs.symlinkSync('l2', join(d, 'l1')), fs.symlinkSync('l1', join(d, 'l2')))],
  ['open a loop', (d) => fs.readFileSync(join(d, 'l1'))],
  ['name of 255 bytes', (d) => fs.writeFileSync(join(d, long(255)), '')],
  ['name of 256 bytes', (d) => fs.writeFileSync(join(d, long(256)), '')],
  ['mkdir of 256 bytes', (d) => fs.mkdirSync(join(d, long(256)))],
  ['stat of 256 bytes', (d) => fs.statSync(join(d, long(256)))],
  ['rename dir into itself', (d) => fs.renameSync(join(d, 'a'), join(d, 'a/sub'))],
  ['mkdir b, b/c', (d) => (fs.mkdirSync(join(d, 'b')), fs.mkdirSync(join(d, 'b/c')))],
  ['rename file over dir', (d) => fs.renameSync(join(d, 'a/f'), join(d, 'b'))],
  ['rename dir over file', (d) => fs.renameSync(join(d, 'b'), join(d, 'a/f'))],
  ['rename dir over non-empty dir', (d) => (fs.mkdirSync(join(d, 'e')), fs.renameSync(join(d, 'e'), join(d, 'b')))],
  ['rename dir over empty dir', (d) => (fs.mkdirSync(join(d, 'e2')), fs.renameSync(join(d, 'e'), join(d, 'e2')))],
  ['rename file replaces file', (d) => (fs.writeFileSync(join(d, 'r1'), 'one'), fs.writeFileSync(join(d, 'r2'), 'two'), fs.renameSync(join(d, 'r1'), join(d, 'r2')), fs.readFileSync(join(d, 'r2'), 'utf8'))],
  ['rename missing', (d) => fs.renameSync(join(d, 'zz'), join(d, 'yy'))],
  ['link a directory', (d) => fs.linkSync(join(d, 'b'), join(d, 'b2'))],
  ['hard link + nlink', (d) => (fs.linkSync(join(d, 'a/f'), join(d, 'hl')), [fs.statSync(join(d, 'a/f')).nlink, fs.statSync(join(d, 'hl')).ino === fs.statSync(join(d, 'a/f')).ino])],
  ['unlink a link, nlink', (d) => (fs.unlinkSync(join(d, 'hl')), fs.statSync(join(d, 'a/f')).nlink)],
  ['dir nlink', (d) => [fs.statSync(join(d, 'b')).nlink, fs.statSync(join(d, 'a')).nlink]],
  ['truncate a dir', (d) => fs.truncateSync(join(d, 'b'), 0)],
  ['open dir for writing', (d) => fs.openSync(join(d, 'b'), 'r+')],
  ['O_APPEND', (d) => {
    const fd = fs.openSync(join(d, 'ap'), 'a');
    fs.writeSync(fd, 'one');
    fs.writeSync(fd, 'two', 0);
    fs.closeSync(fd);
    return fs.readFileSync(join(d, 'ap'), 'utf8');
  }],
  ['O_TRUNC', (d) => (fs.writeFileSync(join(d, 'ap'), 'x'), fs.readFileSync(join(d, 'ap'), 'utf8'))],
  ['truncate up and down', (d) => {
    fs.truncateSync(join(d, 'ap'), 10);
    const a = fs.readFileSync(join(d, 'ap')).toString('hex');
    fs.truncateSync(join(d, 'ap'), 0);
    return [a, fs.statSync(join(d, 'ap')).size];
  }],
  ['ftruncate', (d) => {
    const fd = fs.openSync(join(d, 'ft'), 'w+');
    fs.writeSync(fd, 'abcdef');
    fs.ftruncateSync(fd, 3);
    const s = fs.fstatSync(fd).size;
    fs.closeSync(fd);
    return [s, fs.readFileSync(join(d, 'ft'), 'utf8')];
  }],
  ['chmod', (d) => (fs.chmodSync(join(d, 'ft'), 0o640), (fs.statSync(join(d, 'ft')).mode & 0o7777).toString(8))],
  ['chown', (d) => (fs.chownSync(join(d, 'ft'), 1234, 5678), [fs.statSync(join(d, 'ft')).uid, fs.statSync(join(d, 'ft')).gid])],
  ['utimens with nanoseconds', (d) => {
    spawnSync('touch', ['-d', '2021-02-03 04:05:06.123456789', join(d, 'ft')]);
    const s = fs.statSync(join(d, 'ft'), { bigint: true });
    return [String(s.mtimeNs), String(s.atimeNs)];
  }],
  ['mkfifo', (d) => [spawnSync('mkfifo', [join(d, 'fifo')]).status, fs.statSync(join(d, 'fifo')).isFIFO()]],
  ['unlink open file keeps data', (d) => {
    fs.writeFileSync(join(d, 'uo'), 'still here');
    const fd = fs.openSync(join(d, 'uo'), 'r+');
    fs.unlinkSync(join(d, 'uo'));
    const b = Buffer.alloc(10);
    fs.readSync(fd, b, 0, 10, 0);
    fs.writeSync(fd, 'X', 0);
    fs.readSync(fd, b, 0, 10, 0);
    fs.closeSync(fd);
    return [b.toString(), fs.existsSync(join(d, 'uo'))];
  }],
  ['readdir', (d) => fs.readdirSync(d).sort()],
  ['xattr set/get', (d) => {
    const s = spawnSync('setfattr', ['-n', 'user.color', '-v', 'blue', join(d, 'ft')]);
    const g = spawnSync('getfattr', ['--only-values', '-n', 'user.color', join(d, 'ft')]);
    return [s.status, g.stdout.toString()];
  }],
  ['xattr missing', (d) => spawnSync('getfattr', ['-n', 'user.none', join(d, 'ft')]).stderr.toString().includes('No such attribute')],
  ['xattr remove', (d) => [spawnSync('setfattr', ['-x', 'user.color', join(d, 'ft')]).status, spawnSync('getfattr', ['-d', join(d, 'ft')]).stdout.toString()]],
  ['rmdir', (d) => fs.rmdirSync(join(d, 'e2'))],
  ['sparse file', (d) => {
    const fd = fs.openSync(join(d, 'sp'), 'w');
    fs.writeSync(fd, 'end', 5 * 1024 ** 3);
    fs.closeSync(fd);
    const b = Buffer.alloc(4);
    const rfd = fs.openSync(join(d, 'sp'), 'r');
    fs.readSync(rfd, b, 0, 4, 4 * 1024 ** 3);
    fs.closeSync(rfd);
    return [fs.statSync(join(d, 'sp')).size, b.toString('hex')];
  }],
];

let vol: TestVolume;
let ref: { path: string; cleanup: () => void };

before(async () => {
  vol = await makeVolume([], { encrypted: false });
  await vol.mount();
  ref = tempDir('hoardfs-ref-');
  spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=8g', 'tmpfs', ref.path]);
});

after(async () => {
  spawnSync('umount', [ref.path]);
  ref.cleanup();
  await vol.cleanup();
});

test('POSIX table gives the same results and errnos as tmpfs', () => {
  const diffs: string[] = [];
  for (const [name, f] of steps) {
    const want = JSON.stringify(errno(() => f(ref.path)));
    const got = JSON.stringify(errno(() => f(vol.mnt)));
    if (want !== got) diffs.push(`${name}: tmpfs ${want}, hoardfs ${got}`);
    if (process.env.HOARDFS_TEST_VERBOSE) console.error(name, got);
  }
  assert.deepEqual(diffs, []);
});

test('statfs reports real numbers', () => {
  const s = fs.statfsSync(vol.mnt);
  assert.ok(s.blocks > 0 && s.bfree > 0 && s.bfree <= s.blocks);
  const df = spawnSync('df', ['-B1', vol.mnt]).stdout.toString().trim().split('\n')[1].split(/\s+/);
  assert.equal(Number(df[1]), s.blocks * s.bsize);
});
