// The soak runner: `npm run torture -- --minutes N [--seed S]`. Runs the same generators as the
// CI tests in test/torture/*.test.ts, with larger bounds, round-robin until the time is up, and
// prints: operations run, crashes injected, faults injected, bad inputs tried, mismatches found.
import { parseArgs } from 'node:util';
import { differential, newCounts, setup } from './lib/differential.ts';
import { crashLoop } from './lib/crash.ts';
import { raid0Faults, raid6Faults } from './lib/faults.ts';
import { badInputs, badNamesAndSizes } from './lib/badinput.ts';
import { fuzzParsers } from './lib/fuzz.ts';
import { loadTest, snapshotTorture } from './lib/snapload.ts';
import { runSeed, subSeed } from './lib/rng.ts';

const { values } = parseArgs({ options: { minutes: { type: 'string', default: '10' }, seed: { type: 'string' } }, strict: true });
const minutes = Number(values.minutes);
if (!(minutes > 0)) {
  console.error('usage: npm run torture -- --minutes N [--seed S]');
  process.exit(2);
}
process.env.HOARDFS_KDF ??= '64,1,1';
if (values.seed) process.env.HOARDFS_SEED = values.seed;
const seed = runSeed();
const start = Date.now();
const end = start + minutes * 60_000;
const counts = newCounts();
const findings: string[] = [];
let fuzzInputs = 0;
const log = (m: string) => console.log(`[${((Date.now() - start) / 1000).toFixed(0).padStart(4)} s] ${m}`);
const left = () => end - Date.now();
// Each scenario's share of a round: short runs still visit every scenario.
const slice = (cap: number) => Math.max(12_000, Math.min(cap, left(), (minutes * 60_000) / 5));
log(`torture: ${minutes} min, seed ${seed} (--seed ${seed} or HOARDFS_SEED=${seed} replays)`);

function found(what: string, problems: string[]): void {
  counts.mismatches += problems.length;
  for (const p of problems) findings.push(`${what}: ${p}`);
  if (problems.length) log(`${what}: ${problems.length} problem(s)`);
}

// Once per run: bad input and the parser fuzzing (20,000 inputs per parser).
async function once(): Promise<void> {
  const f = fuzzParsers(subSeed(seed, 5), 20_000, { keyHeader: 20_000 });
  counts.badInputs += f.inputs;
  fuzzInputs = f.inputs;
  found('fuzz', f.problems);
  log(`fuzz: ${f.inputs} inputs`);
  const a = await badInputs({ quick: minutes < 10 });
  const b = await badNamesAndSizes();
  counts.badInputs += a.tried + b.tried;
  found('bad input', [...a.problems, ...b.problems]);
  log(`bad input: ${a.tried + b.tried} tried`);
}

const scenarios: [string, (round: number) => Promise<void>][] = [
  ['differential', async (round) => {
    const e = await setup();
    try {
      const r = await differential({ hoard: e.vol.mnt, ref: e.ref.path, seed: subSeed(seed, 1, round), workers: 4, opsPerBatch: 100, batches: 1e9, deadline: Date.now() + slice(90_000), shrinkBudgetMs: 120_000, log });
      counts.operations += r.operations;
      found('differential', r.mismatches);
      log(`differential: ${r.operations} operations in ${r.batches} batches`);
    } finally {
      await e.cleanup();
    }
  }],
  ['crash', async (round) => {
    const r = await crashLoop({ seed: subSeed(seed, 2, round), rounds: 100, workers: 3, powercut: round % 2 === 1, encrypted: round % 2 === 1, deadline: Date.now() + slice(60_000) });
    counts.operations += r.operations;
    counts.crashes += r.crashes;
    found('crash', [...r.problems, ...r.mismatches]);
    log(`crash${round % 2 ? ' (power cut)' : ''}: ${r.crashes} crashes, ${r.durableChecked} fsynced files checked`);
  }],
  ['faults', async (round) => {
    const r6 = await raid6Faults({ seed: subSeed(seed, 3, round), batches: 1e9, workers: 2, deadline: Date.now() + slice(45_000) * 0.6 });
    const r0 = await raid0Faults({ seed: subSeed(seed, 4, round), episodes: 100, deadline: Date.now() + slice(30_000) * 0.4 });
    counts.operations += r6.operations + r0.operations;
    counts.faults += r6.faults + r0.faults;
    found('faults', [...r6.problems, ...r0.problems]);
    log(`faults: ${r6.faults} on RAID 6, ${r0.faults} on RAID 0`);
  }],
  ['snapshot', async (round) => {
    const r = await snapshotTorture({ seed: subSeed(seed, 6, round), workers: 2, batches: 2 });
    counts.operations += r.operations;
    counts.crashes += r.crashes;
    found('snapshot', r.problems);
    log('snapshot torture: done');
  }],
  ['load', async (round) => {
    const r = await loadTest({ seed: subSeed(seed, 7, round), workers: 16, seconds: Math.max(10, Math.min(60, slice(60_000) / 1000 - 10)), maxRssKiB: 1024 * 1024, log });
    counts.operations += r.operations;
    found('load', r.problems);
  }],
];

try {
  for (let round = 0; left() > 0; round++) {
    for (const [name, f] of scenarios) {
      if (left() <= 0) break;
      try {
        await f(round);
      } catch (e) {
        found(name, [`crashed: ${(e as Error).stack}`]);
      }
    }
  }
  // Bounded, not timed: the parser fuzzing (20,000 inputs per parser) and the bad-input table run
  // once after the timed part, so a short run still does all of them.
  await once();
} finally {
  console.log('');
  console.log(`seed:                ${seed}`);
  console.log(`operations run:      ${counts.operations}`);
  console.log(`crashes injected:    ${counts.crashes}`);
  console.log(`faults injected:     ${counts.faults}`);
  console.log(`bad inputs tried:    ${counts.badInputs} (${fuzzInputs} fuzzed parser inputs, ${counts.badInputs - fuzzInputs} bad CLI/volume/mount cases)`);
  console.log(`mismatches found:    ${counts.mismatches}`);
  for (const f of findings) console.log(`\n${f}`);
  console.log(`(${((Date.now() - start) / 60_000).toFixed(1)} min)`);
}
process.exit(counts.mismatches ? 1 : 0);
