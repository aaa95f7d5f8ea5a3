// hoardfs reencrypt on real mounts: offline and online rotation of an encrypted RAID 5 volume,
// old header backups refused afterwards, dropped slots, and a SIGKILL in the middle that resumes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { BIN, hoardfs, makeVolume, randomData } from '../helpers.ts';
import { checkTree, devices, fsckClean, ok, writeTree } from './util.ts';

test('offline rotation of RAID 5: data intact, old header backup and dropped slot refused', async () => {
  const tv = await makeVolume(['--level', '5', ...devices(3)]);
  try {
    const other = join(tv.root, 'other-pass');
    fs.writeFileSync(other, 'second passphrase\n');
    ok(await hoardfs(['keyslot', 'add', tv.dir, ...tv.secretArgs, '--new-passphrase-file', other]), 'keyslot add');
    await tv.mount();
    const files = writeTree(tv.mnt, 1, 4);
    await tv.umount();
    const backup = join(tv.root, 'header.bak');
    ok(await hoardfs(['header', 'backup', tv.dir, backup]), 'header backup');

    const r = ok(await hoardfs(['reencrypt', tv.dir, ...tv.secretArgs]), 'reencrypt');
    assert.match(r.stdout, /master key rotated to key generation 1/);
    assert.match(r.stdout, /dropped key slot 1: their passphrases were not given/);
    assert.match(r.stderr, /reencrypt \[#+\] 100\.0%/);
    const dump = JSON.parse(ok(await hoardfs(['header', 'dump', tv.dir, '--json'])).stdout);
    assert.deepEqual(dump.keyRotation.inProgress, false);
    assert.equal(dump.slots.length, 1);

    await tv.mount();
    checkTree(tv.mnt, files);
    assert.equal(fs.readlinkSync(join(tv.mnt, 'link')), 'dir/mid.bin');
    // New data is cut with the new gear table: a new copy of old data reads back (it does not
    // dedup against re-sealed chunks, whose boundaries came from the old gear key).
    fs.writeFileSync(join(tv.mnt, 'again.bin'), files.get('dir/big.bin')!);
    await tv.umount();
    await fsckClean(tv.dir, tv.secretArgs);

    // The dropped slot's passphrase opens nothing.
    const m2 = await hoardfs(['mount', tv.dir, tv.mnt, '--passphrase-file', other]);
    assert.notEqual(m2.code, 0);
    assert.match(m2.stderr, /no key slot matches/);

    // An old header backup, restored, is refused with a clear message, and so is restore-metadata.
    const rr = ok(await hoardfs(['header', 'restore', tv.dir, backup]), 'header restore');
    assert.match(rr.stderr, /different master key/);
    const m = await hoardfs(['mount', tv.dir, tv.mnt, ...tv.secretArgs]);
    assert.notEqual(m.code, 0);
    assert.match(m.stderr, /old master key: the volume was re-encrypted/);
    const rm = await hoardfs(['restore-metadata', tv.dir, ...tv.secretArgs]);
    assert.notEqual(rm.code, 0);
    const m3 = await hoardfs(['mount', tv.dir, tv.mnt, '--passphrase-file', other]);
    assert.notEqual(m3.code, 0);
    assert.match(m3.stderr, /old master key/);
  } finally {
    await tv.cleanup();
  }
});

test('online rotation of a mounted RAID 5 volume while files are written and copied', async () => {
  const tv = await makeVolume(['--level', '5', ...devices(3)]);
  try {
    await tv.mount();
    const files = writeTree(tv.mnt, 2, 6);
    ok(await hoardfs(['gc', tv.dir]));
    // Throttled so the writes below land in the middle of the rotation.
    const re = hoardfs(['reencrypt', tv.dir, ...tv.secretArgs, '--max-rate', '8M']);
    await new Promise((r) => setTimeout(r, 400));
    const fresh = randomData(2_000_000, 77);
    fs.writeFileSync(join(tv.mnt, 'during.bin'), fresh);
    // A copy of old data written under the new key: merged with the re-sealed chunk.
    fs.copyFileSync(join(tv.mnt, 'dir/mid.bin'), join(tv.mnt, 'mid-copy.bin'));
    checkTree(tv.mnt, files);
    const r = ok(await re, 'reencrypt (mounted)');
    assert.match(r.stdout, /master key rotated to key generation 1/);
    files.set('during.bin', fresh);
    files.set('mid-copy.bin', files.get('dir/mid.bin')!);
    checkTree(tv.mnt, files);
    const dump = JSON.parse(ok(await hoardfs(['header', 'dump', tv.dir, '--json'])).stdout);
    assert.equal(dump.keyRotation.inProgress, false);
    // A second rotation, through the daemon as well.
    ok(await hoardfs(['reencrypt', tv.dir, ...tv.secretArgs]), 'second reencrypt');
    checkTree(tv.mnt, files);
    await tv.umount();
    await tv.mount();
    checkTree(tv.mnt, files);
    await tv.umount();
    await fsckClean(tv.dir, tv.secretArgs);
  } finally {
    await tv.cleanup();
  }
});

test('SIGKILL in the middle of a reencrypt: it resumes and finishes, data intact, fsck clean', async () => {
  const tv = await makeVolume(['--level', '5', ...devices(3)]);
  try {
    await tv.mount();
    const files = writeTree(tv.mnt, 3, 8);
    await tv.umount();
    const c = spawn(process.execPath, [BIN, 'reencrypt', tv.dir, ...tv.secretArgs, '--max-rate', '3M'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    c.stderr.on('data', (d) => (err += d));
    // Kill it once it has re-sealed something (the progress bar prints every 10%).
    for (let i = 0; i < 600 && !/reencrypt \[#+\.+\] [1-9]/.test(err); i++) await new Promise((r) => setTimeout(r, 50));
    assert.match(err, /reencrypt \[#+\.+\] [1-9]/, 'no progress before the kill: ' + err);
    c.kill('SIGKILL');
    await new Promise((r) => c.once('close', r));
    const dump = JSON.parse(ok(await hoardfs(['header', 'dump', tv.dir, '--json'])).stdout);
    assert.equal(dump.keyRotation.inProgress, true);
    // Mid-rotation the volume mounts and reads (both key sets).
    await tv.mount();
    checkTree(tv.mnt, files);
    await tv.umount();
    const r = ok(await hoardfs(['reencrypt', tv.dir, ...tv.secretArgs]), 'resumed reencrypt');
    assert.match(r.stdout, /resumed and finished/);
    const dump2 = JSON.parse(ok(await hoardfs(['header', 'dump', tv.dir, '--json'])).stdout);
    assert.equal(dump2.keyRotation.inProgress, false);
    assert.equal(dump2.keyRotation.keyGeneration, 1);
    await fsckClean(tv.dir, tv.secretArgs);
    await tv.mount();
    checkTree(tv.mnt, files);
    await tv.umount();
  } finally {
    await tv.cleanup();
  }
});
