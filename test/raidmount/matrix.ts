// The failure matrix on real mounts: for one RAID level, every case is unmount, damage, mount,
// read every file and compare bytes, check `hoardfs status --json`, (scrub when bytes were flipped),
// unmount, restore the device files from the saved copy.
//
// Small arrays (<= 4 devices) run every single failure and every max-tolerance combination; larger
// ones a seeded sample, named in the test titles. HOARDFS_RAIDMOUNT_FULL=1 runs everything,
// HOARDFS_RAIDMOUNT_SEED=n picks another sample.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { mounted, run } from '../helpers.ts';
import {
  KINDS,
  applyFlips,
  damage,
  dataSet,
  describe,
  expectedState,
  maxCombos,
  pickFlips,
  raidVolume,
  readAll,
  roleOf,
  sample,
  unhealed,
  type Damage,
  type Kind,
  type Level,
  type RaidVolume,
  type Status,
  withinTolerance,
} from './helpers.ts';

const FULL = process.env.HOARDFS_RAIDMOUNT_FULL === '1';
const SEED = Number(process.env.HOARDFS_RAIDMOUNT_SEED ?? 1);
const GONE: Kind[] = ['deleted', 'truncated', 'zeros'];

export interface Beyond {
  /** Devices failed completely. */
  full: [number, Kind][];
  /** One more device damaged in two rows only: unreadable in rows 1-2, or bytes flipped in two rows where it holds data. */
  partial?: [number, 'eio' | 'flipped'];
}

export interface Plan {
  level: Level;
  /** How many single failures and max-tolerance combinations to run (all when small or FULL). */
  singles?: number;
  max?: number;
  /** Extra single-failure cases (slot list) so that every kind occurs at a level with few devices. */
  extraSingles?: number[];
  beyond: Beyond[];
}

function expectArrayState(rv: RaidVolume, combo: Map<number, Kind>): 'ONLINE' | 'DEGRADED' | 'FAULTED' {
  const gone = [...combo].filter(([, k]) => GONE.includes(k)).map(([s]) => s);
  if (rv.geo.groups.some((g) => g.slots.filter((s) => gone.includes(s)).length > g.tolerance)) return 'FAULTED';
  return gone.length ? 'DEGRADED' : 'ONLINE';
}

async function safeUmount(rv: RaidVolume): Promise<void> {
  if (mounted(rv.v.mnt)) await rv.umount();
}

function dev(st: Status, slot: number) {
  const d = st.devices.find((x) => x.slot === slot);
  assert.ok(d, `status lists no device in slot ${slot}: ${JSON.stringify(st.devices)}`);
  return d;
}

function daemonLog(rv: RaidVolume): string {
  try {
    return fs.readFileSync(join(rv.v.dir, 'daemon.log'), 'utf8');
  } catch {
    return '';
  }
}

/** One within-tolerance case. */
async function within(rv: RaidVolume, combo: Map<number, Kind>): Promise<void> {
  const what = `RAID ${rv.level.name} ${describe(combo)}`;
  const rules: unknown[] = [];
  const logBefore = daemonLog(rv).length;
  const damages: Damage[] = [...combo].map(([s, k]) => damage(rv, s, k, combo, rules));
  rv.setRules(rules);
  try {
    await rv.mount();
    const r = readAll(rv.v.mnt, rv.files, what);
    assert.deepEqual(r.eio, [], `${what}: files failed within tolerance`);
    const st = await rv.status();
    const want = expectArrayState(rv, combo);
    assert.equal(st.state, want, `${what}: array state`);
    assert.equal(st.canWrite, true);
    const log = daemonLog(rv).slice(logBefore);
    if (want === 'DEGRADED') assert.match(log, /DEGRADED/, `${what}: the daemon did not say DEGRADED`);
    else assert.doesNotMatch(log, /DEGRADED/);
    for (let slot = 0; slot < rv.level.devices; slot++) {
      const d = dev(st, slot);
      const kind = combo.get(slot);
      const ctx = `${what}: slot ${slot} (${kind ?? 'healthy'}) ${JSON.stringify(d)}`;
      if (!kind) {
        assert.equal(d.state, 'ONLINE', ctx);
        assert.deepEqual([d.readErrors, d.writeErrors, d.checksumErrors], [0, 0, 0], ctx);
        continue;
      }
      assert.equal(d.state, expectedState(kind), ctx);
      if (kind === 'eio') {
        assert.ok(d.readErrors > 0, ctx);
        assert.equal(d.checksumErrors, 0, ctx);
      }
      if (kind === 'flipped') {
        assert.ok(d.checksumErrors > 0, ctx);
        assert.equal(d.readErrors, 0, ctx);
      }
    }
    // Flipped bytes that the reads verified are rewritten on the device already.
    for (const d of damages.filter((x) => x.kind === 'flipped')) {
      const left = unhealed(rv.devices[d.slot], d.flips.filter((f) => f.role === 'read'));
      assert.deepEqual(left, [], `${what}: flipped bytes of slot ${d.slot} not healed by the reads`);
    }
    if (damages.some((x) => x.kind === 'flipped')) {
      // Parity and unread mirror copies: scrub recomputes and compares them.
      const sc = await rv.cli(['scrub', rv.v.dir, '--json']);
      assert.equal(sc.code, 0, `${what}: scrub: ${sc.stdout}${sc.stderr}`);
      const rep = JSON.parse(sc.stdout) as { unrecoverableChunks: number; damagedFiles: string[] };
      assert.equal(rep.unrecoverableChunks, 0);
      for (const d of damages.filter((x) => x.kind === 'flipped')) {
        const g = rv.geo.groups[rv.geo.slotGroup[d.slot]];
        // With another member of the group out, the parity of rows that need it cannot be checked.
        const othersOut = g.slots.some((s) => s !== d.slot && combo.has(s) && combo.get(s) !== 'flipped');
        const check = d.flips.filter((f) => f.role === 'scrub' && (g.kind === 'mirror' || !othersOut));
        assert.deepEqual(unhealed(rv.devices[d.slot], check), [], `${what}: flipped parity/copy bytes of slot ${d.slot} not healed by scrub`);
      }
      assert.deepEqual(rep.damagedFiles, []);
    }
    // Nothing changed on the files while all this happened.
    readAll(rv.v.mnt, rv.files, `${what} (again)`);
  } finally {
    await safeUmount(rv);
    await rv.restore();
  }
}

function strip(p: string): string {
  return p.replace(/^\//, '');
}

/** Beyond tolerance: damaged files fail with EIO, the rest read right, scrub and status name them. */
async function beyond(rv: RaidVolume, b: Beyond): Promise<void> {
  const combo = new Map<number, Kind>(b.full);
  if (b.partial) combo.set(b.partial[0], b.partial[1]);
  const what = `RAID ${rv.level.name} beyond tolerance ${describe(new Map(b.full))}${b.partial ? ` + slot ${b.partial[0]} ${b.partial[1]} in two rows` : ''}`;
  const rules: unknown[] = [];
  for (const [s, k] of b.full) damage(rv, s, k, combo, rules);
  if (b.partial) {
    const [s, k] = b.partial;
    if (k === 'eio') rules.push({ path: `d${s}.img`, op: 'read', error: 'EIO', from: rv.dataStart + rv.stripSize, to: rv.dataStart + 3 * rv.stripSize });
    else {
      // Two rows where this device holds data that reads look at.
      const rows = Array.from({ length: rv.fileRows - 1 }, (_, i) => i + 1).filter((r) => roleOf(rv, s, r, combo) === 'read').slice(0, 2);
      assert.equal(rows.length, 2);
      const flips = rows.flatMap((r) => pickFlips(rv, s, combo, 4, 0, [r, r + 1]));
      assert.ok(flips.length >= 6);
      applyFlips(rv.devices[s], flips);
    }
  }
  rv.setRules(rules);
  try {
    await rv.mount();
    const r = readAll(rv.v.mnt, rv.files, what);
    assert.ok(r.eio.length > 0, `${what}: no file failed`);
    assert.ok(r.ok.includes('empty'));
    if (b.partial) assert.ok(r.ok.length > 1, `${what}: only the empty file could be read`);
    const cat = await run('cat', [join(rv.v.mnt, r.eio[0])]);
    assert.notEqual(cat.code, 0);
    assert.match(cat.stderr, /Input\/output error/);
    const gone = b.full.filter(([, k]) => GONE.includes(k)).map(([s]) => s);
    const faulted = rv.geo.groups.some((g) => g.slots.filter((s) => gone.includes(s)).length > g.tolerance);
    let st = await rv.status();
    assert.equal(st.state, expectArrayState(rv, new Map(b.full)), what);
    assert.equal(st.canWrite, !faulted);
    const sc = await rv.cli(['scrub', rv.v.dir, '--json']);
    assert.equal(sc.code, 1, `${what}: scrub exit code: ${sc.stderr}`);
    const rep = JSON.parse(sc.stdout) as { unrecoverableChunks: number; damagedFiles: string[] };
    assert.ok(rep.unrecoverableChunks > 0);
    assert.deepEqual(rep.damagedFiles.map(strip).sort(), [...r.eio].sort(), `${what}: scrub names other files than the reads failed on`);
    st = await rv.status();
    assert.deepEqual(st.damagedFiles.map(strip).sort(), [...r.eio].sort());
    const text = await rv.statusText();
    assert.match(text, new RegExp(`files damaged beyond repair \\(${r.eio.length}\\)`));
    for (const f of r.eio) assert.ok(text.includes(f), `status text does not name ${f}`);
    // A second read pass gives the same answer: nothing was "healed" into wrong bytes.
    const again = readAll(rv.v.mnt, rv.files, `${what} (again)`);
    assert.deepEqual(again.eio, r.eio);
  } finally {
    await safeUmount(rv);
    await rv.restore();
  }
}

function singlesFor(p: Plan): number[] {
  const n = p.level.devices;
  const all = Array.from({ length: n }, (_, i) => i);
  const chosen = FULL || p.singles === undefined ? all : sample(all, p.singles, SEED * 31 + p.level.level);
  return [...chosen, ...(p.extraSingles ?? [])];
}

/** Defines the test for one level: setup, within-tolerance cases, beyond-tolerance cases. */
export async function levelTest(t: TestContext, p: Plan): Promise<void> {
  const files = dataSet(p.level.level + (p.level.mirrors ?? 0));
  const rv = await raidVolume(p.level, { files });
  assert.ok(rv.fileRows >= 4, `only ${rv.fileRows} file rows`);
  await rv.save();
  const allMax = maxCombos(rv.geo);
  const maxList = FULL || p.max === undefined ? allMax : sample(allMax, p.max, SEED * 17 + p.level.level);
  const singles = singlesFor(p);
  const onlySingles = rv.geo.groups.length === 1 && rv.geo.groups[0].tolerance === 1; // max combinations are the singles
  const cases = [...singles.map((s) => [s]), ...(onlySingles ? [] : maxList)].filter((c) => c.length > 0 && withinTolerance(rv.geo, c));
  // Kinds rotate over every failed device, so each kind occurs at every level.
  let k = p.level.level + (p.level.mirrors ?? 0);
  const combos = cases.map((slots) => new Map<number, Kind>(slots.map((s) => [s, KINDS[k++ % KINDS.length]])));
  const used = new Set(combos.flatMap((c) => [...c.values()]));
  if (combos.length) assert.deepEqual([...used].sort(), [...KINDS].sort(), 'the plan does not cover every kind');
  for (const c of combos) await t.test(`RAID ${p.level.name}: ${describe(c)}`, () => within(rv, c));
  for (const b of p.beyond) await t.test(`RAID ${p.level.name}: beyond tolerance ${describe(new Map(b.full))}${b.partial ? `+${b.partial[0]}:${b.partial[1]}(2 rows)` : ''}`, () => beyond(rv, b));
  await rv.cleanup();
}

export function planTitle(p: Plan): string {
  const n = p.level.devices;
  if (p.level.level === 0) return `RAID 0 over ${n} devices (no redundancy): ${p.beyond.length} failures, all beyond tolerance`;
  const s = FULL || p.singles === undefined ? n : p.singles;
  return `RAID ${p.level.name}: ${s}${s < n ? ` sampled (seed ${SEED}) of ${n}` : ''} single failures${p.extraSingles ? ` (+${p.extraSingles.length} more kinds)` : ''}, ${p.max === undefined || FULL ? 'all' : `${p.max} sampled`} max-tolerance combinations, ${p.beyond.length} beyond tolerance`;
}
