// Bad input: every refusal is one clear line, the right exit code, and nothing changes on disk
// (the volume's files are hashed before and after).
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { hoardfs, makeVolume, run, type TestVolume } from '../../helpers.ts';
import { mountWith, tmpfsDir } from './differential.ts';
import { runOp } from './ops.ts';

export interface BadInputResult {
  tried: number;
  problems: string[];
}

/** Hash of every file of the volume (directory and devices), holes included. */
export function hashVolume(v: TestVolume): string {
  const h = createHash('sha256');
  const files = [...fs.readdirSync(v.dir).filter((n) => n !== 'daemon.log' && n !== 'lock').map((n) => join(v.dir, n)), ...fs.readdirSync(v.root).filter((n) => n.endsWith('.img')).map((n) => join(v.root, n))].sort();
  const buf = Buffer.alloc(4 << 20);
  for (const f of files) {
    if (!fs.statSync(f).isFile()) continue;
    h.update(f);
    const fd = fs.openSync(f, 'r');
    for (let pos = 0; ; ) {
      const n = fs.readSync(fd, buf, 0, buf.length, pos);
      if (n <= 0) break;
      h.update(buf.subarray(0, n));
      pos += n;
    }
    fs.closeSync(fd);
  }
  return h.digest('hex');
}

const COMMANDS: [string, number][] = [
  ['mkfs', 1], ['mount', 2], ['umount', 1], ['stats', 1], ['status', 1], ['gc', 1], ['fsck', 1], ['scrub', 1],
  ['replace', 3], ['rebuild', 1], ['restore-metadata', 1], ['keyslot list', 1], ['keyslot add', 1], ['keyslot remove', 1],
  ['keyslot change', 1], ['header dump', 1], ['header backup', 2], ['header restore', 2],
];

export async function badInputs(o: { quick?: boolean } = {}): Promise<BadInputResult> {
  const res: BadInputResult = { tried: 0, problems: [] };
  const devs = ['--device', '{root}/d0.img', '--device', '{root}/d1.img', '--device', '{root}/d2.img', '--level', '5', '--device-size', '26M'];
  const v = await makeVolume(devs, { encrypted: true });
  const other = await makeVolume(['--device', '{root}/d0.img', '--device', '{root}/d1.img', '--device', '{root}/d2.img', '--level', '5', '--device-size', '40M'], { encrypted: true });
  const P = res.problems;
  const refusal = async (what: string, args: string[], re: RegExp, code = 1) => {
    res.tried++;
    // Usage errors are checked as a group (one hash before and after all of them).
    const before = code === 2 ? '' : hashVolume(v);
    const r = await hoardfs(args, { timeoutMs: 60_000 });
    if (r.code === 0 && args[0] === 'mount') await hoardfs(['umount', args[2]]);
    const after = code === 2 ? '' : hashVolume(v);
    const lines = r.stderr.trim().split('\n').filter(Boolean);
    if (r.code !== code) P.push(`${what}: exit ${r.code}, want ${code}: ${r.stderr.trim()}`);
    else if (!re.test(r.stderr)) P.push(`${what}: unclear message: ${r.stderr.trim()}`);
    else if (code === 1 && lines.length !== 1) P.push(`${what}: ${lines.length} lines of error, want one: ${r.stderr.trim()}`);
    if (before !== after) P.push(`${what}: the volume's files changed`);
  };
  const dev0 = join(v.root, 'd0.img');
  const swap = async (file: string, content: Buffer | null, f: () => Promise<void>) => {
    const saved = join(v.root, 'saved.bin');
    fs.copyFileSync(file, saved);
    try {
      if (content) fs.writeFileSync(file, content);
      await f();
    } finally {
      fs.copyFileSync(saved, file);
      fs.rmSync(saved);
    }
  };
  try {
    // Setup: some data, so that "nothing changed" means something.
    await v.mount();
    fs.writeFileSync(join(v.mnt, 'keep'), 'precious');
    await v.umount();

    // Usage errors: unknown flags and missing arguments, for every command: usage, exit 2.
    const usageBefore = hashVolume(v);
    // (Usage errors never touch the volume, so these run four at a time.)
    const usage = COMMANDS.flatMap(([cmd, n]) => {
      const words = cmd.split(' ');
      return [() => refusal(`${cmd} --bogus`, [...words, ...Array.from({ length: n }, () => v.dir), '--bogus-flag'], /usage:/, 2), () => refusal(`${cmd} without arguments`, words, /usage:|missing/, 2)];
    });
    for (let i = 0; i < usage.length; i += 6) await Promise.all(usage.slice(i, i + 6).map((f) => f()));
    await refusal('unknown command', ['frobnicate'], /unknown command/, 2);
    if (hashVolume(v) !== usageBefore) P.push("usage errors changed the volume's files");

    // Not a volume.
    const notVol = join(v.root, 'notvol');
    fs.mkdirSync(notVol);
    for (const cmd of o.quick ? ['mount', 'fsck', 'header dump'] : ['mount', 'stats', 'status', 'gc', 'fsck', 'scrub', 'restore-metadata', 'header dump']) {
      await refusal(`${cmd} of a directory that is not a volume`, [...cmd.split(' '), notVol, ...(cmd === 'mount' ? [v.mnt] : []), ...(cmd.startsWith('header') ? [] : v.secretArgs)], /not a hoardfs volume/);
    }
    await refusal('mount of a file as the volume', ['mount', v.passFile, v.mnt, ...v.secretArgs], /not a hoardfs volume/);

    // Mountpoints.
    await refusal('mountpoint missing', ['mount', v.dir, join(v.root, 'nope'), ...v.secretArgs], /does not exist/);
    await refusal('mountpoint is a file', ['mount', v.dir, v.passFile, ...v.secretArgs], /not a directory/);
    await refusal('mountpoint not empty', ['mount', v.dir, v.root, ...v.secretArgs], /not empty/);

    // A device of another volume in place of ours (a degraded mount marks things on the other
    // devices, so every file is put back afterwards).
    const everything = [...[0, 1, 2].map((i) => join(v.root, `d${i}.img`)), ...fs.readdirSync(v.dir).map((n) => join(v.dir, n))];
    for (const f of everything) if (fs.statSync(f).isFile()) fs.copyFileSync(f, f + '.all');
    await swap(dev0, fs.readFileSync(join(other.root, 'd0.img')), async () => {
      res.tried++;
      const r = await hoardfs(['mount', v.dir, v.mnt, ...v.secretArgs]);
      if (r.code === 0) {
        // RAID 5 may run degraded without it; then it must say so and the data must be intact.
        if (fs.readFileSync(join(v.mnt, 'keep'), 'utf8') !== 'precious') P.push('foreign device: wrong data');
        await v.umount();
        res.tried--;
      } else if (!/another volume|belongs|volume id|not a member|d0\.img/i.test(r.stderr)) P.push(`foreign device: unclear: ${r.stderr}`);
    });
    for (const f of everything) if (fs.existsSync(f + '.all')) fs.renameSync(f + '.all', f);
    // All devices of another volume.
    for (const i of [0, 1, 2]) fs.copyFileSync(join(v.root, `d${i}.img`), join(v.root, `d${i}.keep`));
    for (const i of [0, 1, 2]) fs.copyFileSync(join(other.root, `d${i}.img`), join(v.root, `d${i}.img`));
    await (async () => {
      res.tried++;
      const r = await hoardfs(['mount', v.dir, v.mnt, ...v.secretArgs]);
      if (r.code === 0) await v.umount();
      if (r.code === 0 || r.stderr.trim().split('\n').length !== 1) P.push(`devices of another volume: exit ${r.code}: ${r.stderr}`);
    })();
    for (const i of [0, 1, 2]) fs.renameSync(join(v.root, `d${i}.keep`), join(v.root, `d${i}.img`));

    // Superblock version from the future (checksum fixed up, so only the version is wrong), on every device.
    for (const ver of o.quick ? [2] : [0, 2, 999]) {
      const saved = [0, 1, 2].map((i) => fs.readFileSync(join(v.root, `d${i}.img`)).subarray(0, 8192));
      for (const i of [0, 1, 2]) {
        const fd = fs.openSync(join(v.root, `d${i}.img`), 'r+');
        for (const copy of [0, 4096]) {
          const sb = Buffer.from(saved[i].subarray(copy, copy + 4096));
          sb.writeUInt32LE(ver, 8);
          createHash('sha256').update(sb.subarray(0, 4096 - 32)).digest().copy(sb, 4096 - 32);
          fs.writeSync(fd, sb, 0, 4096, copy);
        }
        fs.closeSync(fd);
      }
      await refusal(`superblock version ${ver}`, ['mount', v.dir, v.mnt, ...v.secretArgs], /version|superblock|not a hoardfs device|no usable|device/i);
      for (const i of [0, 1, 2]) {
        const fd = fs.openSync(join(v.root, `d${i}.img`), 'r+');
        fs.writeSync(fd, saved[i], 0, 8192, 0);
        fs.closeSync(fd);
      }
    }

    // Key header: restore from garbage / truncated files; garbage over the header area of every device.
    for (const [name, bytes] of [['garbage', Buffer.alloc(5000, 0x5a)], ['empty', Buffer.alloc(0)], ['truncated', Buffer.from('HOARDKEY\x01\x00')]] as const) {
      const f = join(v.root, `hdr-${name}`);
      fs.writeFileSync(f, bytes);
      await refusal(`header restore from a ${name} file`, ['header', 'restore', v.dir, f], /key header|header|truncated|magic/i);
    }
    {
      const saved = [0, 1, 2].map((i) => {
        const fd = fs.openSync(join(v.root, `d${i}.img`), 'r+');
        const b = Buffer.alloc(16 << 20);
        fs.readSync(fd, b, 0, b.length, 64 * 1024);
        fs.writeSync(fd, Buffer.alloc(16 << 20, 0xa5), 0, 16 << 20, 64 * 1024);
        fs.closeSync(fd);
        return b;
      });
      await refusal('garbage over every key header', ['mount', v.dir, v.mnt, ...v.secretArgs], /no readable key header/);
      [0, 1, 2].forEach((i) => {
        const fd = fs.openSync(join(v.root, `d${i}.img`), 'r+');
        fs.writeSync(fd, saved[i], 0, saved[i].length, 64 * 1024);
        fs.closeSync(fd);
      });
    }

    // A database that is not ours.
    const foreign = join(v.root, 'foreign.db');
    spawnSync('sqlite3', [foreign, 'CREATE TABLE config (key TEXT, value TEXT); CREATE TABLE t (x); INSERT INTO t VALUES (1);']);
    await swap(join(v.dir, 'meta.db'), fs.readFileSync(foreign), async () => {
      for (const w of ['meta.db-wal', 'meta.db-shm']) fs.rmSync(join(v.dir, w), { force: true });
      await refusal('a foreign SQLite file as meta.db', ['mount', v.dir, v.mnt, ...v.secretArgs], /not a readable hoardfs metadata database/);
      await refusal('fsck of a foreign meta.db', ['fsck', v.dir, ...v.secretArgs], /not a readable hoardfs metadata database/);
    });
    await swap(join(v.dir, 'meta.db'), Buffer.from('garbage'.repeat(1000)), async () => {
      await refusal('garbage as meta.db', ['mount', v.dir, v.mnt, ...v.secretArgs], /not a readable hoardfs metadata database|metadata/);
    });

    // Already mounted.
    if (process.env.TORTURE_DEBUG) console.error(P);
    await v.mount();
    await refusal('mounted twice at the same place', ['mount', v.dir, v.mnt, ...v.secretArgs], /already mounted/).catch(() => {});
    const mnt2 = join(v.root, 'mnt2');
    fs.mkdirSync(mnt2);
    res.tried++;
    const twice = await hoardfs(['mount', v.dir, mnt2, ...v.secretArgs]);
    if (twice.code === 0 || !/already mounted at/.test(twice.stderr)) P.push(`mounted twice: ${twice.stderr}`);
    res.tried++;
    const fsckMounted = await hoardfs(['fsck', v.dir, ...v.secretArgs]);
    if (fsckMounted.code === 0 || !/is mounted/.test(fsckMounted.stderr)) P.push(`fsck while mounted: ${fsckMounted.stderr}`);
    await v.umount();
  } finally {
    await v.cleanup();
    await other.cleanup();
  }
  return res;
}

/** Names and sizes through the mount: the same errno as tmpfs, and the file unchanged. */
export async function badNamesAndSizes(): Promise<BadInputResult> {
  const res: BadInputResult = { tried: 0, problems: [] };
  const v = await makeVolume([], { encrypted: false });
  const ref = tmpfsDir();
  try {
    await mountWith(v);
    const roots = [ref.path, v.mnt];
    for (const r of roots) fs.writeFileSync(join(r, 'f'), 'content that must stay');
    const long = 'n'.repeat(256);
    const cases: [string, (d: string) => unknown][] = [
      ['create 256-byte name', (d) => fs.writeFileSync(join(d, long), 'x')],
      ['create 255-byte name', (d) => fs.writeFileSync(join(d, 'n'.repeat(255)), 'x')],
      ['mkdir 256', (d) => fs.mkdirSync(join(d, long))],
      ['rename to 256', (d) => fs.renameSync(join(d, 'f'), join(d, long))],
      ['link to 256', (d) => fs.linkSync(join(d, 'f'), join(d, long))],
      ['symlink named 256', (d) => fs.symlinkSync('f', join(d, long))],
      ['symlink target 4096', (d) => fs.symlinkSync('t'.repeat(4096), join(d, 'lt'))],
      ['multibyte name of 256 bytes', (d) => fs.writeFileSync(join(d, 'é'.repeat(128)), 'x')],
      ['path component of 256 in the middle', (d) => fs.writeFileSync(join(d, long, 'x'), 'x')],
      ['xattr name of 256', (d) => runOp(d, { op: 'setxattr', path: 'f', name: 'user.' + 'x'.repeat(251), value: '00' })],
      ['xattr value of 65537', (d) => spawnSync('setfattr', ['-n', 'user.big', '-v', '0x' + '00'.repeat(65537), join(d, 'f')], { encoding: 'utf8' }).stderr.replace(d, '')],
      ['listing', (d) => fs.readdirSync(d).sort()],
    ];
    for (const [name, f] of cases) {
      res.tried++;
      const out = roots.map((d) => {
        try {
          return JSON.stringify(f(d) ?? 'ok');
        } catch (e) {
          return (e as NodeJS.ErrnoException).code ?? String(e);
        }
      });
      if (out[0] !== out[1]) res.problems.push(`${name}: tmpfs ${out[0]}, hoardfs ${out[1]}`);
    }
    // Absurd sizes: tmpfs takes up to 2^63-1; hoardfs stops at 2^53-1 (EFBIG), and either way a
    // refused call leaves the file as it was.
    const f = join(v.mnt, 'f');
    const want = fs.readFileSync(f);
    for (const [name, cmd, args] of [
      ['truncate -s 2^63-1', 'truncate', ['-s', '9223372036854775807', f]],
      ['truncate -s 2^62', 'truncate', ['-s', '4611686018427387904', f]],
      ['truncate -s 2^53', 'truncate', ['-s', '9007199254740992', f]],
      ['write 1 byte at 2^62', 'dd', ['if=/dev/zero', `of=${f}`, 'bs=1', 'count=1', 'seek=4611686018427387904', 'conv=notrunc', 'status=none']],
      ['write 1 byte at 2^53-1', 'dd', ['if=/dev/zero', `of=${f}`, 'bs=1', 'count=1', 'seek=9007199254740991', 'conv=notrunc', 'status=none']],
    ] as const) {
      res.tried++;
      const r = spawnSync(cmd, [...args], { encoding: 'utf8' });
      const size = fs.statSync(f).size;
      if (r.status === 0) res.problems.push(`${name}: accepted (size now ${size})`);
      else if (!/File too large|Invalid argument/.test(r.stderr)) res.problems.push(`${name}: want EFBIG or EINVAL, got ${r.stderr.trim()}`);
      const head = Buffer.alloc(want.length + 8);
      const fd = fs.openSync(f, 'r');
      const n = fs.readSync(fd, head, 0, head.length, 0);
      fs.closeSync(fd);
      if (size !== want.length || !head.subarray(0, n).equals(want)) res.problems.push(`${name}: the file changed (size ${size})`);
    }
  } finally {
    await v.cleanup();
    ref.cleanup();
  }
  return res;
}
