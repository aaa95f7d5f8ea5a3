// create / stat / read / unlink of N small files (1,000 bytes each) in 100-file directories.
// Plain JS in its own process, so that start-up stays out of the numbers. Prints JSON ops/s.
//   node bench/smallfiles.mjs DIR N
import { mkdirSync, readFileSync, rmdirSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const [dir, nArg] = process.argv.slice(2);
const n = Number(nArg ?? 10000);
const data = Buffer.alloc(1000, 'x');
const per = 100;
const path = (i) => join(dir, `d${Math.floor(i / per)}`, `f${i}`);
mkdirSync(dir, { recursive: true });
for (let d = 0; d < Math.ceil(n / per); d++) mkdirSync(join(dir, `d${d}`));
const phase = (fn) => {
  const t0 = performance.now();
  for (let i = 0; i < n; i++) fn(i);
  return n / ((performance.now() - t0) / 1000);
};
const out = {};
out.create = phase((i) => writeFileSync(path(i), data));
out.stat = phase((i) => statSync(path(i)));
out.read = phase((i) => readFileSync(path(i)));
out.unlink = phase((i) => unlinkSync(path(i)));
for (let d = 0; d < Math.ceil(n / per); d++) rmdirSync(join(dir, `d${d}`));
process.stdout.write(JSON.stringify(out) + '\n');
