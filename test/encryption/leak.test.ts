// Issue 4, test 1: no file name, directory name, xattr, symlink target or content fragment in
// plain bytes anywhere hoardfs writes (device files, meta.db and its -wal/-shm, hoardfs.json,
// daemon.log, lock, the /run/hoardfs records), for RAID 6 over several devices and one device.
// An unencrypted twin proves the scan finds what is there.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { RUN_DIR } from '../../src/volume/control.ts';
import { hoardfs, makeVolume, type TestVolume } from '../helpers.ts';
import { devices, ok } from './util.ts';

const tag = Math.random().toString(36).slice(2, 8);
const M = {
  dir: `zqdir-${tag}-Wombat`,
  file: `zqfile-${tag}-Quokka.txt`,
  small: `zqsmall-${tag}-Numbat`,
  xname: `user.zqxattr-${tag}-Dingo`,
  xvalue: `zqxvalue-${tag}-Platypus`,
  link: `zqlink-${tag}-Echidna`,
  target: `zqtarget-${tag}-Bilby/elsewhere`,
  content: `ZQCONTENT-${tag}-Kookaburra-sits-in-the-old-gum-tree`,
  smallContent: `ZQSMALL-${tag}-Wallaby`,
};

function populate(mnt: string): void {
  const d = join(mnt, M.dir);
  fs.mkdirSync(d);
  // Content marker repeated through a 3 MB file (so every chunk holds it) and in a tiny file.
  const line = Buffer.from(`${M.content}\n`);
  fs.writeFileSync(join(d, M.file), Buffer.concat(Array.from({ length: Math.ceil(3_000_000 / line.length) }, () => line)));
  fs.writeFileSync(join(d, M.small), M.smallContent);
  fs.symlinkSync(M.target, join(d, M.link));
  const x = spawnSync('setfattr', ['-n', M.xname, '-v', M.xvalue, join(d, M.file)]);
  assert.equal(x.status, 0, String(x.stderr));
}

function filesOf(tv: TestVolume, volumeId: string): string[] {
  const out: string[] = [];
  const walk = (p: string) => {
    for (const e of fs.readdirSync(p, { withFileTypes: true })) {
      const q = join(p, e.name);
      if (e.isDirectory()) walk(q);
      else if (e.isFile()) out.push(q);
    }
  };
  walk(tv.dir);
  for (const n of fs.readdirSync(tv.root)) if (/^d\d+$/.test(n)) out.push(join(tv.root, n));
  if (fs.existsSync(RUN_DIR)) for (const n of fs.readdirSync(RUN_DIR)) if (n.startsWith(volumeId) && fs.statSync(join(RUN_DIR, n)).isFile()) out.push(join(RUN_DIR, n));
  return out;
}

/** Every marker (whole, and a 12-byte fragment of each content marker) found in the files. */
function scan(paths: string[]): string[] {
  const needles = [...Object.values(M), M.content.slice(10, 22), M.smallContent.slice(2, 14)].map((s) => Buffer.from(s));
  const found = new Set<string>();
  const maxLen = Math.max(...needles.map((n) => n.length));
  const buf = Buffer.alloc(8 << 20);
  for (const p of paths) {
    const fd = fs.openSync(p, 'r');
    try {
      let pos = 0;
      let carry = 0;
      for (;;) {
        const n = fs.readSync(fd, buf, carry, buf.length - carry, pos);
        if (n <= 0) break;
        const view = buf.subarray(0, carry + n);
        for (const nd of needles) if (view.indexOf(nd) >= 0) found.add(`${nd} in ${p}`);
        pos += n;
        carry = Math.min(maxLen, view.length);
        view.copy(buf, 0, view.length - carry);
      }
    } finally {
      fs.closeSync(fd);
    }
  }
  return [...found];
}

async function leakCheck(mkfs: string[], encrypted: boolean): Promise<{ mounted: string[]; unmounted: string[] }> {
  const tv = await makeVolume(mkfs, { encrypted });
  try {
    await tv.mount();
    populate(tv.mnt);
    const volumeId = JSON.parse(fs.readFileSync(join(tv.dir, 'hoardfs.json'), 'utf8')).volumeId as string;
    ok(await hoardfs(['stats', tv.dir, '--json', ...tv.secretArgs])); // flushes nothing, but exercises the daemon
    spawnSync('sync');
    const inUse = filesOf(tv, volumeId);
    const mounted = scan(inUse);
    await tv.umount();
    const unmounted = scan([...new Set([...inUse.filter((p) => fs.existsSync(p)), ...filesOf(tv, volumeId)])]);
    return { mounted, unmounted };
  } finally {
    await tv.cleanup();
  }
}

test('RAID 6 over 5 devices: no name or content in plain bytes in any file hoardfs wrote', async () => {
  const r = await leakCheck(['--level', '6', ...devices(5, '64M')], true);
  assert.deepEqual(r.unmounted, []);
  assert.deepEqual(r.mounted, []);
});

test('one device: no name or content in plain bytes; an unencrypted twin shows them (the scan works)', async () => {
  const r = await leakCheck(devices(1, '64M'), true);
  assert.deepEqual(r.unmounted, []);
  assert.deepEqual(r.mounted, []);
  const plain = await leakCheck(devices(1, '64M'), false);
  for (const m of [M.dir, M.file, M.content, M.xvalue, M.target]) assert.ok(plain.unmounted.some((f) => f.startsWith(m)), `unencrypted twin: ${m} not found`);
});
