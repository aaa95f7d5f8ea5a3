// Failure matrix on real mounts, part 1: RAID 0, 1, 5, 6 (see matrix.ts for what each case checks).
import { test, after } from 'node:test';
import { cleanupAll } from './helpers.ts';
import { levelTest, planTitle, type Plan } from './matrix.ts';

after(cleanupAll);

const plans: Plan[] = [
  // RAID 0 tolerates nothing: every failure is beyond tolerance.
  { level: { name: '0', level: 0, devices: 2 }, beyond: [{ full: [], partial: [1, 'flipped'] }, { full: [[0, 'deleted']] }] },
  { level: { name: '1', level: 1, devices: 3 }, beyond: [{ full: [[0, 'deleted'], [1, 'zeros']], partial: [2, 'flipped'] }] },
  // Three devices give three single failures; two more cases so that all five kinds occur.
  { level: { name: '5', level: 5, devices: 3 }, extraSingles: [0, 1], beyond: [{ full: [[0, 'deleted']], partial: [1, 'eio'] }] },
  { level: { name: '6', level: 6, devices: 4 }, beyond: [{ full: [[0, 'deleted'], [1, 'truncated']], partial: [2, 'eio'] }] },
];

for (const p of plans) test(planTitle(p), { timeout: 600_000 }, (t) => levelTest(t, p));
