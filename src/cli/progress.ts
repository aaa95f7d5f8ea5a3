// A progress bar on stderr: redrawn in place on a terminal, a line per 10% otherwise (logs, CI).
import { formatBytes } from './args.ts';

export function progressBar(label: string): { update: (p: Record<string, unknown>) => void; done: () => void } {
  const tty = process.stderr.isTTY;
  let lastDecile = -1;
  let drawn = false;
  const start = Date.now();
  return {
    update(p) {
      const done = Number(p.done ?? 0);
      const total = Number(p.total ?? 0);
      const frac = total ? done / total : 1;
      const rate = Number(p.bytesPerSec ?? 0);
      const elapsed = (Date.now() - start) / 1000;
      // The daemon's estimate (bytes left at the measured speed) when it sends one, else by rows.
      const eta =
        frac >= 1 ? undefined : p.etaSeconds !== undefined && p.etaSeconds !== null ? Math.round(Number(p.etaSeconds)) : frac > 0 && elapsed > 1 ? Math.round(((1 - frac) / frac) * elapsed) : undefined;
      const width = 30;
      const bar = '#'.repeat(Math.round(frac * width)).padEnd(width, '.');
      const line = `${label} [${bar}] ${(100 * frac).toFixed(1)}% ${done}/${total}${rate ? ` ${formatBytes(rate)}/s` : ''}${eta !== undefined ? ` ETA ${eta}s` : ''}`;
      if (tty) {
        process.stderr.write(`\r${line}`);
        drawn = true;
      } else {
        const decile = Math.floor(frac * 10);
        if (decile !== lastDecile) {
          lastDecile = decile;
          process.stderr.write(line + '\n');
        }
      }
    },
    done() {
      if (tty && drawn) process.stderr.write('\n');
    },
  };
}
