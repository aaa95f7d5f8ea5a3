// Parity throughput of src/raid (pure JS). Prints MB/s of *data* bytes processed, the figure
// that bounds how fast full-stripe row writes and degraded reads can go on one core.
import { computePQ, solveGroup } from '../../src/raid/gf.ts';

const STRIP = 64 * 1024;
const MB = 1e6;

function strips(n: number): Uint8Array[] {
  return Array.from({ length: n }, () => {
    const b = new Uint8Array(STRIP);
    for (let i = 0; i < STRIP; i++) b[i] = (i * 2654435761) >>> 24;
    return b;
  });
}

function bench(name: string, dataBytes: number, fn: () => void): number {
  for (let i = 0; i < 50; i++) fn(); // let the JIT settle
  let iters = 0;
  const t0 = process.hrtime.bigint();
  let t = t0;
  while (t - t0 < 700_000_000n) {
    for (let i = 0; i < 20; i++) fn();
    iters += 20;
    t = process.hrtime.bigint();
  }
  const sec = Number(t - t0) / 1e9;
  const rate = (dataBytes * iters) / sec / MB;
  console.log(`${name.padEnd(40)} ${rate.toFixed(0).padStart(7)} MB/s`);
  return rate;
}

const cases: [number, boolean][] = [
  [2, false],
  [4, false],
  [4, true],
  [8, true],
];
for (const [k, withQ] of cases) {
  const d = strips(k);
  const p = new Uint8Array(STRIP);
  const q = withQ ? new Uint8Array(STRIP) : null;
  bench(`${withQ ? 'P+Q' : 'P  '} ${k}+${withQ ? 2 : 1} @64KiB`, k * STRIP, () => computePQ(d, p, q));
}

{
  const d = strips(4);
  const p = new Uint8Array(STRIP);
  const q = new Uint8Array(STRIP);
  computePQ(d, p, q);
  bench('recover 1 data via P   4+2 @64KiB', 4 * STRIP, () => solveGroup([d[0], null, d[2], d[3]], p, q, STRIP, false, false));
  bench('recover 1 data via Q   4+2 @64KiB', 4 * STRIP, () => solveGroup([d[0], null, d[2], d[3]], null, q, STRIP, false, false));
  bench('recover 2 data via P+Q 4+2 @64KiB', 4 * STRIP, () => solveGroup([null, d[1], null, d[3]], p, q, STRIP, false, false));
}
