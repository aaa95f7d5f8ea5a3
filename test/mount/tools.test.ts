// Ordinary tools on a real mount (encrypted, RAID 6 over 6 device files): what a user does all day.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { hoardfs, makeVolume, randomData, sh, type TestVolume } from '../helpers.ts';

let vol: TestVolume;

before(async () => {
  const devs = Array.from({ length: 6 }, (_, i) => ['--device', `{root}/d${i}.img`]).flat();
  vol = await makeVolume(['--level', '6', ...devs]);
  await vol.mount();
});

after(async () => {
  await vol.cleanup();
});

async function ok(script: string, timeoutMs = 300_000): Promise<string> {
  const r = await sh(script, { timeoutMs });
  assert.equal(r.code, 0, `${script}\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

test('cp -a /usr/include, then diff -r finds no difference', async () => {
  await ok(`cp -a /usr/include ${vol.mnt}/include && diff -r /usr/include ${vol.mnt}/include`);
});

test('rsync -aHAX twice: the second run transfers nothing; hard links and xattrs kept', async () => {
  const src = join(vol.root, 'rsrc');
  await ok(`mkdir -p ${src}/d && cp -a /usr/include/linux ${src}/d/ && echo hi > ${src}/a && ln ${src}/a ${src}/b && setfattr -n user.k -v v ${src}/a`);
  await ok(`rsync -aHAX ${src}/ ${vol.mnt}/rs/`);
  const second = await ok(`rsync -aHAX --stats ${src}/ ${vol.mnt}/rs/`);
  assert.match(second, /Number of regular files transferred: 0/);
  const a = fs.statSync(join(vol.mnt, 'rs/a'));
  const b = fs.statSync(join(vol.mnt, 'rs/b'));
  assert.equal(a.ino, b.ino);
  assert.equal(a.nlink, 2);
  assert.equal((await ok(`getfattr --only-values -n user.k ${vol.mnt}/rs/a`)).trim(), 'v');
});

test('tar c | tar x round trip', async () => {
  await ok(`mkdir ${vol.mnt}/tar && tar -C /usr/include -cf - linux | tar -C ${vol.mnt}/tar -xf - && diff -r /usr/include/linux ${vol.mnt}/tar/linux`);
  await ok(`tar -C ${vol.mnt}/tar -cf ${vol.root}/out.tar linux && mkdir ${vol.root}/untar && tar -C ${vol.root}/untar -xf ${vol.root}/out.tar && diff -r /usr/include/linux ${vol.root}/untar/linux`);
});

test('git init, commit a few thousand files, fsck, gc', async () => {
  const g = `${vol.mnt}/repo`;
  await ok(
    `mkdir ${g} && cd ${g} && git init -q && git config user.email t@t && git config user.name t && ` +
      `for i in $(seq 1 30); do mkdir d$i; for j in $(seq 1 100); do echo "file $i $j" > d$i/f$j; done; done && ` +
      `git add -A && git commit -qm one && git fsck --strict && git gc -q && git fsck && test $(git ls-files | wc -l) = 3000`,
  );
});

test('SQLite in WAL mode: many transactions, integrity_check ok', async () => {
  const db = `${vol.mnt}/test.db`;
  const sql = ['PRAGMA journal_mode=WAL;', 'CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT);'];
  for (let i = 0; i < 300; i++) sql.push(`BEGIN; INSERT INTO t (v) VALUES (hex(randomblob(200))); UPDATE t SET v = v || 'x' WHERE k = ${1 + (i % 50)}; COMMIT;`);
  fs.writeFileSync(join(vol.root, 'load.sql'), sql.join('\n'));
  await ok(`sqlite3 ${db} < ${vol.root}/load.sql`);
  const out = await ok(`sqlite3 ${db} 'PRAGMA integrity_check; SELECT count(*) FROM t;'`);
  assert.equal(out.trim(), 'ok\n300');
});

test('make builds a small C program on the mount', async () => {
  const d = `${vol.mnt}/cprog`;
  fs.mkdirSync(d);
  fs.writeFileSync(join(d, 'main.c'), '#include <stdio.h>\nint add(int,int);\nint main(void){printf("%d\\n", add(2,3));return 0;}\n');
  fs.writeFileSync(join(d, 'add.c'), 'int add(int a,int b){return a+b;}\n');
  fs.writeFileSync(join(d, 'Makefile'), 'prog: main.o add.o\n\tcc -o prog main.o add.o\n%.o: %.c\n\tcc -c $<\n');
  await ok(`make -s -C ${d}`);
  assert.equal((await ok(`${d}/prog`)).trim(), '5');
});

test('mmap writes and reads go through the page cache', async () => {
  const f = join(vol.mnt, 'mm');
  fs.writeFileSync(f, Buffer.alloc(65536));
  await ok(`python3 -c "
import mmap
with open('${f}', 'r+b') as fh:
    m = mmap.mmap(fh.fileno(), 0)
    m[100:105] = b'hello'
    m.flush()
    m.close()
"`);
  assert.equal(fs.readFileSync(f).subarray(100, 105).toString(), 'hello');
});

test('a non-root user is held to the permission bits', async () => {
  const d = join(vol.mnt, 'perm');
  fs.mkdirSync(d, { mode: 0o755 });
  fs.writeFileSync(join(d, 'secret'), 'x', { mode: 0o600 });
  fs.writeFileSync(join(d, 'public'), 'readable', { mode: 0o644 });
  const pub = await sh(`setpriv --reuid=65534 --regid=65534 --clear-groups cat ${d}/public`);
  assert.equal(pub.stdout, 'readable', pub.stderr);
  const r = await sh(`setpriv --reuid=65534 --regid=65534 --clear-groups cat ${d}/secret`);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /Permission denied/);
  const w = await sh(`setpriv --reuid=65534 --regid=65534 --clear-groups touch ${d}/new`);
  assert.match(w.stderr, /Permission denied/);
});

test('copying a 200 MiB file inside the mount grows stored bytes by under 1%', async () => {
  const f = join(vol.mnt, 'big');
  const data = randomData(200 * 1024 * 1024, 77);
  fs.writeFileSync(f, data);
  await ok(`sync ${f}`);
  const before = JSON.parse((await hoardfs(['stats', vol.dir, '--json'])).stdout);
  await ok(`cp ${f} ${vol.mnt}/big2 && sync ${vol.mnt}/big2`);
  const afterS = JSON.parse((await hoardfs(['stats', vol.dir, '--json'])).stdout);
  const grew = afterS.storedBytes - before.storedBytes;
  assert.ok(grew < 0.01 * data.length, `stored bytes grew by ${grew}`);
  assert.ok(fs.readFileSync(join(vol.mnt, 'big2')).equals(data));
});

test('stats --json has plain integer byte counts and a dedup ratio', async () => {
  const r = await hoardfs(['stats', vol.dir, '--json']);
  assert.equal(r.code, 0, r.stderr);
  const s = JSON.parse(r.stdout);
  for (const k of ['files', 'logicalBytes', 'storedBytes', 'chunks']) assert.ok(Number.isInteger(s[k]), k);
  assert.ok(s.dedupRatio >= 1.9, `dedup ratio ${s.dedupRatio}`);
});

test('POSIX ACLs: kept by cp -a and rsync -aHAX, enforced, inherited from default ACLs', async () => {
  const src = join(vol.root, 'aclsrc');
  await ok(`mkdir -p ${src}/d && echo data > ${src}/f && setfacl -m u:65534:rw- ${src}/f && setfacl -d -m u:65534:r-x ${src}/d`);
  await ok(`cp -a ${src} ${vol.mnt}/aclcp && rsync -aHAX ${src}/ ${vol.mnt}/aclrs/`);
  for (const d of ['aclcp', 'aclrs']) {
    const f = await ok(`getfacl -c ${vol.mnt}/${d}/f`);
    assert.match(f, /user:nobody:rw-/, d);
    const dd = await ok(`getfacl -c ${vol.mnt}/${d}/d`);
    assert.match(dd, /default:user:nobody:r-x/, d);
  }
  // Enforced by the kernel: nobody may write f through its ACL entry, not through "other".
  await ok(`chmod 640 ${vol.mnt}/aclcp/f && setfacl -m u:65534:rw- ${vol.mnt}/aclcp/f`);
  await ok(`setpriv --reuid=65534 --regid=65534 --clear-groups sh -c 'echo more >> ${vol.mnt}/aclcp/f'`);
  assert.equal(fs.readFileSync(join(vol.mnt, 'aclcp/f'), 'utf8'), 'data\nmore\n');
  // Inherited: a file created under the default ACL carries the entry.
  await ok(`touch ${vol.mnt}/aclcp/d/new`);
  assert.match(await ok(`getfacl -c ${vol.mnt}/aclcp/d/new`), /user:nobody:r-x/);
});
