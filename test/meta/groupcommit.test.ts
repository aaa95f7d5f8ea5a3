// Group commit in the metadata layer: commands are savepoints inside a transaction that commits
// within milliseconds, at once when durable. What a user relies on: a crash keeps a prefix of the
// operations and everything up to the last durable one; a failed command changes nothing, even
// in the middle of a group; another reader sees the changes shortly after.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import Database from 'better-sqlite3-multiple-ciphers';
import { Metadata, ROOT_INO } from '../../src/meta/metadata.ts';
import { FsError } from '../../src/fs/types.ts';
import { ROOT, tempDir } from '../helpers.ts';

const KEY = 'ab'.repeat(32);
const mknod = (name: string) => ({ op: 'mknod' as const, parent: ROOT_INO, name: Buffer.from(name), mode: 0o100644, uid: 0, gid: 0, rdev: 0, now: 1n });

function namesSeenByAnotherReader(path: string): string[] {
  const db = new Database(path, { readonly: true });
  try {
    db.pragma(`key = '${KEY}'`);
    return (db.prepare('SELECT name FROM dirents WHERE parent = ?').all(ROOT_INO) as { name: Buffer }[]).map((r) => r.name.toString()).sort();
  } finally {
    db.close();
  }
}

/** A fresh encrypted metadata database path in a temporary directory, removed afterwards. */
async function withDbPath(fn: (path: string) => unknown): Promise<void> {
  const t = tempDir();
  try {
    await fn(join(t.path, 'meta.db'));
  } finally {
    t.cleanup();
  }
}

test('grouped commands reach other readers within the group interval; a durable one at once', async () => {
  await withDbPath(async (path) => {
    const m = Metadata.open(path, { create: true, hexKey: KEY });
    m.apply(mknod('a'));
    m.apply(mknod('b'));
    // Still one open group: this process sees both, another reader neither.
    assert.ok(m.lookup(ROOT_INO, Buffer.from('b')) !== undefined);
    assert.deepEqual(namesSeenByAnotherReader(path), []);
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(namesSeenByAnotherReader(path), ['a', 'b']);
    m.apply(mknod('c'));
    m.apply(mknod('d'), true);
    assert.deepEqual(namesSeenByAnotherReader(path), ['a', 'b', 'c', 'd']);
    m.close();
  });
});

test('a command that fails inside a group changes nothing and keeps the commands before it', async () => {
  await withDbPath((path) => {
    const m = Metadata.open(path, { create: true, hexKey: KEY });
    const ino = m.apply<number>(mknod('x'));
    assert.throws(() => m.apply(mknod('x')), (e: unknown) => e instanceof FsError && e.code === 'EEXIST');
    // rmdir of a file fails after finding it: the savepoint undoes whatever it touched.
    assert.throws(() => m.apply({ op: 'rmdir', parent: ROOT_INO, name: Buffer.from('x'), now: 2n }), (e: unknown) => e instanceof FsError);
    m.apply(mknod('y'));
    m.close();
    const again = Metadata.open(path, { hexKey: KEY });
    assert.equal(again.lookup(ROOT_INO, Buffer.from('x')), ino);
    assert.ok(again.lookup(ROOT_INO, Buffer.from('y')) !== undefined);
    assert.equal(again.inode(ino)?.nlink, 1);
    assert.deepEqual(again.check(false).problems, []);
    again.close();
  });
});

test('SIGKILL in the middle of grouped commands: a prefix survives, at least up to the last durable one', async () => {
  await withDbPath((path) => {
    Metadata.open(path, { create: true, hexKey: KEY }).close();
    // A child applies f0..f1999, f1200 durable, and kills itself without closing anything.
    const script = `
      import { Metadata, ROOT_INO } from ${JSON.stringify(join(ROOT, 'src/meta/metadata.ts'))};
      const m = Metadata.open(${JSON.stringify(path)}, { hexKey: '${KEY}' });
      for (let i = 0; i < 2000; i++) m.apply({ op: 'mknod', parent: ROOT_INO, name: Buffer.from('f' + i), mode: 0o100644, uid: 0, gid: 0, rdev: 0, now: 1n }, i === 1200);
      process.kill(process.pid, 'SIGKILL');`;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: ROOT, encoding: 'utf8' });
    assert.equal(r.signal, 'SIGKILL', r.stderr);
    const m = Metadata.open(path, { hexKey: KEY });
    const have = new Set(namesSeenByAnotherReader(path));
    let n = 0;
    while (have.has(`f${n}`)) n++;
    assert.equal(have.size, n, 'what survives is a prefix of the commands');
    assert.ok(n >= 1201, `everything up to the durable command survives (${n} did)`);
    assert.ok(n < 2000, `the last group was lost with the process (${n} survived): this test would prove nothing otherwise`);
    assert.deepEqual(m.check(false).problems, []);
    m.close();
  });
});
