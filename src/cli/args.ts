// Command-line parsing helpers: node:util parseArgs in strict mode, with usage errors that say
// what was wrong and how the command is spelled.
import { parseArgs, type ParseArgsConfig } from 'node:util';

export class UsageError extends Error {
  constructor(
    message: string,
    readonly usage?: string,
  ) {
    super(message);
  }
}

export type Options = NonNullable<ParseArgsConfig['options']>;

export function parse(argv: string[], options: Options, usage: string, positionals: { min: number; max: number }) {
  let r;
  try {
    r = parseArgs({ args: argv, options: { help: { type: 'boolean', short: 'h' }, ...options }, strict: true, allowPositionals: true });
  } catch (e) {
    throw new UsageError((e as Error).message.replace(/\. To specify.*$/s, ''), usage);
  }
  if (r.values.help) {
    process.stdout.write(`usage: ${usage}\n`);
    process.exit(0);
  }
  if (r.positionals.length < positionals.min) throw new UsageError('missing arguments', usage);
  if (r.positionals.length > positionals.max) throw new UsageError(`unexpected argument '${r.positionals[positionals.max]}'`, usage);
  return { values: r.values as Record<string, string | boolean | string[] | undefined>, positionals: r.positionals };
}

const UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };

export function parseSize(s: string, what: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?$/i.exec(s.trim());
  if (!m) throw new UsageError(`${what}: '${s}' is not a size (examples: 4096, 64K, 10G)`);
  const n = Math.round(Number(m[1]) * UNITS[m[2].toLowerCase()]);
  if (!Number.isSafeInteger(n) || n <= 0) throw new UsageError(`${what}: '${s}' is out of range`);
  return n;
}

export function parseInteger(s: string, what: string, min: number, max: number): number {
  if (!/^\d+$/.test(s)) throw new UsageError(`${what}: '${s}' is not a whole number`);
  const n = Number(s);
  if (n < min || n > max) throw new UsageError(`${what}: ${n} is out of range ${min}..${max}`);
  return n;
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${n} B` : `${v.toFixed(v >= 100 ? 0 : v >= 10 ? 1 : 2)} ${units[u]}`;
}
