// Issue 4, test 3: every key-slot operation through the CLI, on an unmounted and on a mounted
// volume: add (passphrase and binary key file), list, change, remove; wrong secrets change
// nothing on disk; a removed slot stays removed even with a stale device carrying an old header;
// the last slot cannot go; 32 slots at most; header dump/backup/restore; --key-file; env.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { hoardfs, makeVolume, tempDir, mounted, forceUnmount } from '../helpers.ts';
import { devicePaths, devices, hashAll, ok } from './util.ts';

function secretFile(dir: string, name: string, content: string | Buffer): string {
  const p = join(dir, name);
  fs.writeFileSync(p, content);
  return p;
}

async function opens(dir: string, args: string[], env?: Record<string, string>): Promise<boolean> {
  const r = await hoardfs(['stats', dir, '--json', ...args], { env });
  if (r.code !== 0 && !/no key slot matches/.test(r.stderr)) throw new Error(`stats failed oddly: ${r.stderr}`);
  return r.code === 0;
}

async function slots(dir: string): Promise<{ index: number; kind: string }[]> {
  return JSON.parse(ok(await hoardfs(['keyslot', 'list', dir, '--json'])).stdout);
}

test('key slots on an unmounted RAID 1 volume, with a stale device holding an old header', async () => {
  const tv = await makeVolume(['--level', '1', ...devices(2, '64M')]);
  try {
    const p2 = secretFile(tv.root, 'p2', 'second passphrase\n');
    const p3 = secretFile(tv.root, 'p3', 'third passphrase\n');
    const wrong = secretFile(tv.root, 'wrong', 'not the passphrase\n');
    // Binary key file: NUL, newline and high bytes, used raw.
    const kf = secretFile(tv.root, 'kf', Buffer.from([0, 10, 255, 13, 0, 0, 7, 128, ...Array.from({ length: 56 }, (_, i) => (i * 37) & 0xff)]));
    assert.match(ok(await hoardfs(['keyslot', 'add', tv.dir, ...tv.secretArgs, '--new-passphrase-file', p2])).stdout, /added key slot 1/);
    assert.match(ok(await hoardfs(['keyslot', 'add', tv.dir, ...tv.secretArgs, '--new-key-file', kf])).stdout, /added key slot 2/);
    assert.deepEqual((await slots(tv.dir)).map((s) => [s.index, s.kind]), [[0, 'passphrase'], [1, 'passphrase'], [2, 'keyfile']]);
    const list = ok(await hoardfs(['keyslot', 'list', tv.dir])).stdout;
    assert.match(list, /slot 2: keyfile, argon2id m=64 KiB t=1 p=1/);

    // Wrong passphrase: refused with a clear message, nothing on disk changed.
    const devs = devicePaths(tv.root, 2);
    const before = hashAll([...devs, join(tv.dir, 'meta.db'), join(tv.dir, 'hoardfs.json')]);
    for (const args of [
      ['keyslot', 'add', tv.dir, '--passphrase-file', wrong, '--new-passphrase-file', p3],
      ['keyslot', 'remove', tv.dir, '--slot', '1', '--passphrase-file', wrong],
      ['keyslot', 'change', tv.dir, '--passphrase-file', wrong, '--new-passphrase-file', p3],
      ['mount', tv.dir, tv.mnt, '--passphrase-file', wrong],
    ]) {
      const r = await hoardfs(args);
      assert.notEqual(r.code, 0, args.join(' '));
      assert.match(r.stderr, /no key slot matches this passphrase/, args.join(' '));
    }
    assert.deepEqual(hashAll([...devs, join(tv.dir, 'meta.db'), join(tv.dir, 'hoardfs.json')]), before, 'wrong passphrase changed the disk');

    // change: the key file's slot becomes passphrase p3.
    assert.match(ok(await hoardfs(['keyslot', 'change', tv.dir, '--key-file', kf, '--new-passphrase-file', p3])).stdout, /passphrase changed/);
    assert.equal(await opens(tv.dir, ['--key-file', kf]), false);
    assert.equal(await opens(tv.dir, ['--passphrase-file', p3]), true);

    // remove slot 1 with a stale copy of d1 (old header, slot 1 still in it) put back afterwards.
    const stale = join(tv.root, 'd1.stale');
    fs.copyFileSync(devs[1], stale);
    assert.match(ok(await hoardfs(['keyslot', 'remove', tv.dir, '--slot', '1', ...tv.secretArgs])).stdout, /removed key slot 1/);
    fs.copyFileSync(stale, devs[1]);
    assert.equal(await opens(tv.dir, ['--passphrase-file', p2]), false, 'a removed slot opened the volume through a stale header copy');
    assert.equal(await opens(tv.dir, tv.secretArgs), true);
    await tv.mount(); // rewrites the stale copies
    await tv.umount();
    assert.equal(await opens(tv.dir, ['--passphrase-file', p2]), false);
    assert.ok(!fs.readFileSync(devs[1]).subarray(0, 64 << 20).includes(fs.readFileSync(stale).subarray(65536 + 65536 + 128_000, 65536 + 65536 + 128_000 + 4096)), 'slot 1 material still on the stale device');

    // The last slot cannot be removed.
    const left = await slots(tv.dir);
    for (const s of left.slice(1)) ok(await hoardfs(['keyslot', 'remove', tv.dir, '--slot', String(s.index), ...tv.secretArgs]));
    const last = await hoardfs(['keyslot', 'remove', tv.dir, '--slot', '0', ...tv.secretArgs]);
    assert.notEqual(last.code, 0);
    assert.match(last.stderr, /refusing to remove the last active key slot/);

    // header dump: slots and KDF parameters, never a key.
    const dumpText = ok(await hoardfs(['header', 'dump', tv.dir])).stdout;
    const dump = JSON.parse(dumpText);
    assert.deepEqual(dump.slots.map((s: { index: number; kdf: { memoryKiB: number; passes: number } }) => [s.index, s.kdf.memoryKiB, s.kdf.passes]), [[0, 64, 1]]);
    assert.doesNotMatch(dumpText, /[0-9a-f]{64}|[A-Za-z0-9+/]{40,}|passphrase\n|horse/);

    // backup / restore round trip; env passphrase.
    const bak = join(tv.root, 'hdr.bak');
    ok(await hoardfs(['header', 'backup', tv.dir, bak]));
    ok(await hoardfs(['keyslot', 'add', tv.dir, ...tv.secretArgs, '--new-passphrase-file', p2]));
    assert.equal(await opens(tv.dir, [], { HOARDFS_PASSPHRASE: 'second passphrase' }), true);
    assert.match(ok(await hoardfs(['header', 'restore', tv.dir, bak])).stdout, /restored .* \(1 key slots\)/);
    assert.deepEqual((await slots(tv.dir)).map((s) => s.index), [0]);
    assert.equal(await opens(tv.dir, [], { HOARDFS_PASSPHRASE: 'second passphrase' }), false);
    assert.equal(await opens(tv.dir, [], { HOARDFS_PASSPHRASE: 'correct horse battery staple' }), true);
  } finally {
    await tv.cleanup();
  }
});

test('key slots on a mounted volume made with --key-file: 32 slots at most, wrong secrets change nothing', async () => {
  const t = tempDir();
  const dir = join(t.path, 'vol');
  const mnt = join(t.path, 'mnt');
  fs.mkdirSync(mnt);
  try {
    const kf = secretFile(t.path, 'kf', Buffer.from(Array.from({ length: 64 }, (_, i) => (i * 91 + 3) & 0xff)));
    const wrongKf = secretFile(t.path, 'wkf', Buffer.from(Array.from({ length: 64 }, (_, i) => (i * 91 + 4) & 0xff)));
    ok(await hoardfs(['mkfs', dir, '--key-file', kf, ...devices(1, '64M').map((a) => a.replace('{root}', t.path))]), 'mkfs --key-file');
    ok(await hoardfs(['mount', dir, mnt, '--key-file', kf]), 'mount --key-file');
    fs.writeFileSync(join(mnt, 'f'), 'data');
    const pf = Array.from({ length: 32 }, (_, i) => secretFile(t.path, `p${i}`, `passphrase number ${i}\n`));
    // 31 more slots, four CLI calls at a time (the daemon serializes them).
    for (let i = 1; i < 32; i += 4) {
      const batch = pf.slice(i, Math.min(32, i + 4)).map((p, k) => hoardfs(['keyslot', 'add', dir, '--key-file', kf, '--new-passphrase-file', p, '--slot', String(i + k)]));
      for (const r of await Promise.all(batch)) ok(r, 'add');
    }
    assert.equal((await slots(dir)).length, 32);
    const full = await hoardfs(['keyslot', 'add', dir, '--key-file', kf, '--new-passphrase-file', pf[0]]);
    assert.notEqual(full.code, 0);
    assert.match(full.stderr, /all 32 key slots are in use/);

    const devs = [join(t.path, 'd0')];
    const before = hashAll(devs);
    const bad = await hoardfs(['keyslot', 'remove', dir, '--slot', '5', '--key-file', wrongKf]);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /no key slot matches/);
    assert.deepEqual(hashAll(devs), before);

    // remove slot 5 (p5) and change p6's passphrase, while mounted.
    const listed = await slots(dir);
    assert.equal(listed[0].kind, 'keyfile');
    ok(await hoardfs(['keyslot', 'remove', dir, '--slot', '5', '--key-file', kf]));
    const p5 = fs.readFileSync(pf[5], 'utf8').trim();
    const denied = await hoardfs(['keyslot', 'add', dir, '--new-passphrase-file', pf[0]], { env: { HOARDFS_PASSPHRASE: p5 } });
    assert.notEqual(denied.code, 0);
    assert.match(denied.stderr, /no key slot matches/);
    const fresh = secretFile(t.path, 'fresh', 'fresh passphrase\n');
    ok(await hoardfs(['keyslot', 'change', dir, '--passphrase-file', pf[6], '--new-passphrase-file', fresh]));
    ok(await hoardfs(['umount', mnt]));
    // Unmounted: the changed and removed ones are gone, the new one and the env path work.
    assert.equal(await opens(dir, ['--passphrase-file', pf[6]]), false);
    assert.equal(await opens(dir, [], { HOARDFS_PASSPHRASE: p5 }), false);
    ok(await hoardfs(['mount', dir, mnt], { env: { HOARDFS_PASSPHRASE: 'fresh passphrase' } }), 'mount with HOARDFS_PASSPHRASE');
    assert.equal(fs.readFileSync(join(mnt, 'f'), 'utf8'), 'data');
    ok(await hoardfs(['umount', mnt]));
  } finally {
    if (mounted(mnt)) await hoardfs(['umount', mnt]).catch(() => {});
    forceUnmount(mnt);
    t.cleanup();
  }
});
