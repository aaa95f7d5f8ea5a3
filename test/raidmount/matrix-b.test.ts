// Failure matrix on real mounts, part 2: RAID 10 (2- and 3-way mirrors), 50, 60; the larger arrays
// run a seeded sample of their combinations, named in the test titles (matrix.ts).
import { test, after } from 'node:test';
import { cleanupAll } from './helpers.ts';
import { levelTest, planTitle, type Plan } from './matrix.ts';

after(cleanupAll);

const plans: Plan[] = [
  { level: { name: '10 (2-way)', level: 10, devices: 4, mirrors: 2 }, beyond: [{ full: [[0, 'deleted'], [1, 'truncated']] }] },
  { level: { name: '10 (3-way)', level: 10, devices: 6, mirrors: 3 }, singles: 3, max: 3, beyond: [{ full: [[3, 'zeros'], [4, 'deleted'], [5, 'eio']] }] },
  { level: { name: '50', level: 50, devices: 6, groupSize: 3 }, singles: 2, max: 3, beyond: [{ full: [[3, 'deleted'], [4, 'zeros']] }] },
  { level: { name: '60', level: 60, devices: 8, groupSize: 4 }, singles: 2, max: 3, beyond: [{ full: [[0, 'deleted'], [1, 'zeros']], partial: [2, 'flipped'] }] },
];

for (const p of plans) test(planTitle(p), { timeout: 600_000 }, (t) => levelTest(t, p));
