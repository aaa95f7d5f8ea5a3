// Every level: healthy round trip, then every combination of failed devices within tolerance for
// every failure kind must read back the right bytes (and heal silent corruption); beyond tolerance
// reads fail with EIO and never return wrong bytes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rm, truncate, open as fsOpen } from 'node:fs/promises';
import { basename } from 'node:path';
import type { LayoutSpec } from '../../src/raid/index.ts';
import { buildGeometry, normalizeLayout, rowMap, type Geometry } from '../../src/raid/layout.ts';
import {
  createArray,
  DATA_START,
  DEV_SIZE,
  fillRows,
  fixture,
  openArray,
  readDeviceData,
  readEverything,
  restore,
  rng,
  snapshot,
  STRIP,
  type Fixture,
} from './helpers.ts';

const LEVELS: { name: string; spec: LayoutSpec }[] = [
  { name: 'RAID 0', spec: { level: 0, devices: 2 } },
  { name: 'RAID 1', spec: { level: 1, devices: 3 } },
  { name: 'RAID 5', spec: { level: 5, devices: 4 } },
  { name: 'RAID 6', spec: { level: 6, devices: 5 } },
  { name: 'RAID 10 m=2', spec: { level: 10, devices: 4, mirrors: 2 } },
  { name: 'RAID 10 m=3', spec: { level: 10, devices: 6, mirrors: 3 } },
  { name: 'RAID 50', spec: { level: 50, devices: 6, groupSize: 3 } },
  { name: 'RAID 60', spec: { level: 60, devices: 8, groupSize: 4 } },
];

type Kind = 'deleted' | 'truncated' | 'zeroed' | 'eio' | 'flipped';
const KINDS: Kind[] = ['deleted', 'truncated', 'zeroed', 'eio', 'flipped'];

function subsetsUpTo(items: number[], k: number): number[][] {
  const out: number[][] = [[]];
  const rec = (start: number, acc: number[]) => {
    for (let i = start; i < items.length; i++) {
      const next = [...acc, items[i]];
      if (next.length <= k) {
        out.push(next);
        rec(i + 1, next);
      }
    }
  };
  rec(0, []);
  return out;
}

/** Every set of failed slots that each group tolerates. */
function tolerableCombos(geo: Geometry): number[][] {
  let combos: number[][] = [[]];
  for (const g of geo.groups) {
    const local = subsetsUpTo(g.slots, g.tolerance);
    combos = combos.flatMap((c) => local.map((l) => [...c, ...l]));
  }
  return combos;
}

/** Bytes of a slot's strip that carry information (data bytes or parity), for flipping. */
function meaningful(geo: Geometry, slot: number, row: number, len: number, h: number): number {
  const g = geo.groups[geo.slotGroup[slot]];
  const mi = geo.slotMember[slot];
  const map = rowMap(g, row);
  let j: number;
  if (g.kind === 'mirror') j = g.firstData;
  else if (g.kind === 'stripe') j = g.firstData + mi;
  else if (mi === map.p || mi === map.q) return h;
  else j = g.firstData + map.data.indexOf(mi);
  return Math.max(0, Math.min(h, len - j * h));
}

async function inflict(f: Fixture, geo: Geometry, failed: number[], kind: Kind, r: () => number): Promise<void> {
  const rules: unknown[] = [];
  for (const slot of failed) {
    const path = f.paths[slot];
    switch (kind) {
      case 'deleted':
        await rm(path);
        break;
      case 'truncated':
        await truncate(path, DATA_START + 3 * STRIP);
        break;
      case 'zeroed':
        await truncate(path, 0);
        await truncate(path, DEV_SIZE);
        break;
      case 'eio':
        rules.push({ path: basename(path), op: 'read', error: 'EIO', from: DATA_START });
        break;
      case 'flipped': {
        const fh = await fsOpen(path, 'r+');
        for (const [row, e] of f.expected) {
          const m = meaningful(geo, slot, row, e.data.length, e.height);
          if (m === 0) continue;
          for (let i = 0; i < 3; i++) {
            const pos = DATA_START + row * STRIP + ((r() * m) | 0);
            const b = Buffer.alloc(1);
            await fh.read(b, 0, 1, pos);
            b[0] ^= 1 + ((r() * 255) | 0);
            await fh.write(b, 0, 1, pos);
          }
        }
        await fh.close();
        break;
      }
    }
  }
  await f.setRules(rules);
}

for (const { name, spec } of LEVELS) {
  test(`${name}: round trip, every tolerable failure × kind, beyond tolerance`, async (t) => {
    const f = await fixture(spec.devices);
    t.after(() => f.cleanup());
    const r = rng(spec.level * 100 + spec.devices);
    const geo = buildGeometry(normalizeLayout({ ...spec, stripSize: STRIP }));
    const arr = await createArray(f, spec);
    assert.equal(arr.rowDataBytes, geo.dataStrips * STRIP);
    await fillRows(arr, f, r);
    await readEverything(arr, f, r, { verify: true, ranges: 4 });
    await readEverything(arr, f, r, { verify: false, ranges: 2 });
    assert.equal(arr.degraded, false);
    assert.deepEqual(arr.errorCounts(), { readErrors: 0, writeErrors: 0, checksumErrors: 0 });
    await arr.sync();
    await arr.close();
    const pristine = await snapshot(f.paths);

    const combos = tolerableCombos(geo).filter((c) => c.length > 0);
    let cases = 0;
    for (const failed of combos)
      for (const kind of KINDS) {
        cases++;
        const label = `${kind} slots [${failed}]`;
        await inflict(f, geo, failed, kind, r);
        const a = await openArray(f);
        try {
          const st = a.status();
          for (const s of failed) {
            const want = kind === 'deleted' || kind === 'zeroed' ? 'MISSING' : kind === 'truncated' ? 'FAULTED' : 'ONLINE';
            assert.equal(st[s].state, want, `${label}: slot ${s} state`);
          }
          assert.equal(a.canWrite, true, label);
          await readEverything(a, f, r, { verify: true, ranges: 1 });
          if (kind !== 'flipped') await readEverything(a, f, r, { verify: false, ranges: 1 });
          if (kind === 'eio') for (const s of failed) assert.ok(a.status()[s].readErrors > 0, `${label}: read errors counted on ${s}`);
          if (kind === 'flipped') {
            for (const [row, e] of f.expected) await a.checkRow(row, e.height, true);
            for (const s of failed) assert.ok(a.status()[s].checksumErrors > 0, `${label}: checksum errors counted on ${s}`);
          }
        } catch (e) {
          (e as Error).message = `${label}: ${(e as Error).message}`;
          throw e;
        } finally {
          await a.close();
        }
        if (kind === 'flipped') {
          // Self-healing and scrub must have put back exactly the original bytes.
          for (let s = 0; s < f.paths.length; s++) {
            const now = await readDeviceData(f.paths[s]);
            for (const [row, e] of f.expected) {
              const at = row * STRIP;
              assert.ok(now.subarray(at, at + e.height).equals(pristine.data[s].subarray(at, at + e.height)), `${label}: slot ${s} row ${row} healed`);
            }
          }
        }
        await f.setRules([]);
        // Only the failed devices may have been written (healing goes to them alone).
        await restore(f.paths, pristine, failed);
      }
    t.diagnostic(`${cases} failure cases`);

    // One more device than group 0 tolerates.
    const g0 = geo.groups[0];
    const over = g0.slots.slice(0, g0.tolerance + 1);
    for (const kind of ['deleted', 'eio', 'flipped'] as Kind[]) {
      await inflict(f, geo, over, kind, r);
      if (kind === 'deleted' && over.length === f.paths.length) {
        // Nothing left to assemble from.
        await assert.rejects(openArray(f), { code: 'ENODEV' });
        await restore(f.paths, pristine);
        continue;
      }
      const a = await openArray(f);
      let eio = 0;
      try {
        if (kind === 'deleted') {
          assert.equal(a.canWrite, false);
          assert.ok(f.logs.some((l) => l.includes('degraded')));
          await assert.rejects(a.writeRow(0, Buffer.alloc(10)), { code: 'EIO' });
        }
        await readEverything(a, f, r, {
          verify: true,
          ranges: 2,
          onError: (_row, e) => {
            assert.equal((e as { code?: string }).code, 'EIO', String(e));
            eio++;
          },
        });
      } finally {
        await a.close();
      }
      if (kind === 'eio') assert.ok(eio > 0, `beyond tolerance (${kind}) must fail some reads with EIO`);
      await f.setRules([]);
      await restore(f.paths, pristine);
    }
  });
}
