// Geometry: which slot holds which strip of a row. A layout is a list of groups that a row spans;
// data strips are numbered group by group, so a chunk that crosses a strip boundary usually stays
// inside one group and a degraded read touches as few groups as possible.

export type RaidLevel = 0 | 1 | 5 | 6 | 10 | 50 | 60;

export interface LayoutSpec {
  level: RaidLevel;
  devices: number;
  groupSize?: number;
  mirrors?: number;
  stripSize?: number;
}

export type GroupKind = 'stripe' | 'mirror' | 'parity';

export interface GroupGeo {
  index: number;
  kind: GroupKind;
  slots: number[]; // global slot numbers of the members, in member order
  nparity: 0 | 1 | 2;
  dataCount: number; // data strips this group contributes to a row
  firstData: number; // global index of its first data strip
  tolerance: number; // members it can lose and still read every row
}

export interface Geometry {
  layout: Required<LayoutSpec>;
  groups: GroupGeo[];
  dataStrips: number;
  slotGroup: number[]; // slot -> group index
  slotMember: number[]; // slot -> member index in its group
}

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const DEFAULT_STRIP = 64 * KiB;
export const MAX_DEVICES = 64;

const LEVELS: readonly number[] = [0, 1, 5, 6, 10, 50, 60];

function bad(msg: string): never {
  throw Object.assign(new Error(`invalid RAID layout: ${msg}`), { code: 'EINVAL' });
}

export function normalizeLayout(spec: LayoutSpec): Required<LayoutSpec> {
  const { level } = spec;
  const n = spec.devices;
  if (!LEVELS.includes(level)) bad(`unknown level ${String(level)} (supported: ${LEVELS.join(', ')})`);
  if (!Number.isInteger(n) || n < 1) bad(`devices must be a positive integer, got ${n}`);
  if (n > MAX_DEVICES) bad(`at most ${MAX_DEVICES} devices, got ${n}`);
  const stripSize = spec.stripSize ?? DEFAULT_STRIP;
  // Heights are rounded to 4 KiB, so a strip must hold a whole number of those.
  if (!Number.isInteger(stripSize) || stripSize < 4 * KiB || stripSize % (4 * KiB) !== 0 || stripSize > 16 * MiB)
    bad(`stripSize must be a multiple of 4096 between 4 KiB and 16 MiB, got ${stripSize}`);
  // Explicit values that contradict the level are rejected rather than silently ignored.
  const expect = (what: 'groupSize' | 'mirrors', value: number) => {
    if (spec[what] !== undefined && spec[what] !== value) bad(`RAID ${level} with ${n} devices implies ${what} ${value}, got ${spec[what]}`);
  };
  switch (level) {
    case 0:
      expect('mirrors', 1);
      expect('groupSize', n);
      return { level, devices: n, groupSize: n, mirrors: 1, stripSize };
    case 1:
      if (n < 2) bad(`RAID 1 needs at least 2 devices, got ${n}`);
      expect('mirrors', n);
      expect('groupSize', n);
      return { level, devices: n, groupSize: n, mirrors: n, stripSize };
    case 5:
      if (n < 3) bad(`RAID 5 needs at least 3 devices, got ${n}`);
      expect('mirrors', 1);
      expect('groupSize', n);
      return { level, devices: n, groupSize: n, mirrors: 1, stripSize };
    case 6:
      if (n < 4) bad(`RAID 6 needs at least 4 devices, got ${n}`);
      expect('mirrors', 1);
      expect('groupSize', n);
      return { level, devices: n, groupSize: n, mirrors: 1, stripSize };
    case 10: {
      const m = spec.mirrors ?? 2;
      if (m !== 2 && m !== 3) bad(`RAID 10 mirrors must be 2 or 3, got ${m}`);
      if (spec.groupSize !== undefined && spec.groupSize !== m) bad('RAID 10 groupSize is the number of mirrors');
      if (n < 2 * m || n % m !== 0) bad(`RAID 10 with ${m} mirrors needs a multiple of ${m} devices, at least ${2 * m}; got ${n}`);
      return { level, devices: n, groupSize: m, mirrors: m, stripSize };
    }
    case 50:
    case 60: {
      const min = level === 50 ? 3 : 4;
      const g = spec.groupSize ?? (n % 2 === 0 ? n / 2 : 0);
      if (spec.mirrors !== undefined && spec.mirrors !== 1) bad(`RAID ${level} does not take mirrors`);
      if (!Number.isInteger(g) || g < min)
        bad(`RAID ${level} needs groupSize >= ${min} (${n} devices${spec.groupSize === undefined ? ', no groupSize given' : `, groupSize ${g}`})`);
      if (n % g !== 0 || n / g < 2) bad(`RAID ${level} needs at least 2 groups of ${g} devices (devices must be a multiple of groupSize); got ${n}`);
      return { level, devices: n, groupSize: g, mirrors: 1, stripSize };
    }
  }
  return bad(`unknown level ${String(level)}`);
}

export function buildGeometry(layout: Required<LayoutSpec>): Geometry {
  const { level, devices: n, groupSize: g } = layout;
  const groups: GroupGeo[] = [];
  const kind: GroupKind = level === 0 ? 'stripe' : level === 1 || level === 10 ? 'mirror' : 'parity';
  const nparity = (level === 5 || level === 50 ? 1 : level === 6 || level === 60 ? 2 : 0) as 0 | 1 | 2;
  let firstData = 0;
  for (let gi = 0; gi < n / g; gi++) {
    const slots = Array.from({ length: g }, (_, i) => gi * g + i);
    const dataCount = kind === 'stripe' ? g : kind === 'mirror' ? 1 : g - nparity;
    const tolerance = kind === 'stripe' ? 0 : kind === 'mirror' ? g - 1 : nparity;
    groups.push({ index: gi, kind, slots, nparity, dataCount, firstData, tolerance });
    firstData += dataCount;
  }
  const slotGroup: number[] = [];
  const slotMember: number[] = [];
  for (const gr of groups)
    gr.slots.forEach((s, i) => {
      slotGroup[s] = gr.index;
      slotMember[s] = i;
    });
  return { layout, groups, dataStrips: firstData, slotGroup, slotMember };
}

export interface RowMap {
  data: number[]; // member index holding data strip k of the group (mirror: the first copy)
  p: number; // member index of P, -1 if none
  q: number; // member index of Q, -1 if none
}

/**
 * md's left-symmetric placement: parity walks backwards one member per row and the data strips
 * follow it cyclically, so consecutive rows put their parity (and the parity write load) on
 * different devices and every device serves data reads.
 */
export function rowMap(g: GroupGeo, row: number): RowMap {
  const s = g.slots.length;
  if (g.kind === 'stripe') return { data: g.slots.map((_, i) => i), p: -1, q: -1 };
  if (g.kind === 'mirror') return { data: [0], p: -1, q: -1 };
  const pd = s - 1 - (row % s);
  const data: number[] = [];
  for (let k = 0; k < g.dataCount; k++) data.push((pd + g.nparity + k) % s);
  return { data, p: pd, q: g.nparity === 2 ? (pd + 1) % s : -1 };
}

/** Order in which mirror copies are preferred for a row: rotating spreads read load. */
export function mirrorOrder(g: GroupGeo, row: number): number[] {
  const s = g.slots.length;
  return Array.from({ length: s }, (_, i) => (row + i) % s);
}

export function roundUp(n: number, m: number): number {
  return Math.ceil(n / m) * m;
}

export const SB_SIZE = 4 * KiB;
export const HEADER_BASE = 64 * KiB;
export const HEADER_COPY = 8 * MiB; // each copy's area
export const HEADER_BLOB_MAX = HEADER_COPY - 4 * KiB;
export const DATA_MIN_START = 17 * MiB;

export function dataStartFor(stripSize: number): number {
  return roundUp(DATA_MIN_START, stripSize);
}
