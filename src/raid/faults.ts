// Test-only fault injection: an OpenDevice wrapper that fails reads, writes, syncs or opens of
// chosen devices according to a JSON rules file. The daemon installs it only when the environment
// variable HOARDFS_FAULTS=/path/rules.json is set; never set it on a volume you care about.
//
// Rules file: an array (or { "rules": [...] }) of
//   { "path": "d2.img", "op": "read" | "write" | "sync" | "open", "error": "EIO" | "ENOSPC" | ...,
//     "from": byteOffset, "to": byteOffset, "count": n, "delayMs": ms }
// `path` matches the device path exactly, or its basename, or a path suffix. `from`/`to` bound the
// byte range ([from, to), either may be omitted) an I/O must overlap to fail. `count` limits how
// many times the rule fires (counted since the file was last (re)loaded); omitted = forever.
// `delayMs` makes the failing I/O take that long first (to hold a commit while later work piles up);
// with "error": "none" the I/O is only delayed, then done.
// The file is re-read only when its mtime, size or inode changes, so editing it mid-test works.

import { statSync, readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { constants as osConstants } from 'node:os';
import type { DeviceIO, OpenDevice } from './device.ts';
import { fileOpenDevice } from './device.ts';

export interface FaultRule {
  path: string;
  op: 'read' | 'write' | 'sync' | 'open';
  error?: string;
  from?: number;
  to?: number;
  count?: number;
  delayMs?: number;
}

interface Loaded {
  key: string;
  rules: (FaultRule & { fired: number })[];
}

function fault(code: string, path: string, op: string): Error {
  const errno = (osConstants.errno as Record<string, number>)[code] ?? osConstants.errno.EIO;
  return Object.assign(new Error(`${code}: injected ${op} fault on ${path}`), { code, errno: -errno, syscall: op, path });
}

export function faultyOpenDevice(base: OpenDevice, rulesPath: string): OpenDevice {
  let loaded: Loaded = { key: '', rules: [] };
  const current = (): Loaded['rules'] => {
    let key: string;
    try {
      const st = statSync(rulesPath, { bigint: true });
      key = `${st.ino}:${st.size}:${st.mtimeNs}`;
    } catch {
      key = 'absent';
    }
    if (key !== loaded.key) {
      let rules: FaultRule[] = [];
      if (key !== 'absent') {
        try {
          const j = JSON.parse(readFileSync(rulesPath, 'utf8')) as FaultRule[] | { rules: FaultRule[] };
          rules = Array.isArray(j) ? j : (j.rules ?? []);
        } catch {
          // A half-written rules file is read again when its mtime moves on.
          return loaded.rules;
        }
      }
      loaded = { key, rules: rules.map((r) => ({ ...r, fired: 0 })) };
    }
    return loaded.rules;
  };
  const matches = (rule: FaultRule, path: string): boolean =>
    rule.path === path || rule.path === basename(path) || path.endsWith(`/${rule.path}`);
  const check = async (path: string, op: FaultRule['op'], pos = 0, len = 0): Promise<void> => {
    for (const r of current()) {
      if (r.op !== op || !matches(r, path)) continue;
      if (op === 'read' || op === 'write') {
        const end = pos + Math.max(len, 1);
        if (r.from !== undefined && end <= r.from) continue;
        if (r.to !== undefined && pos >= r.to) continue;
      }
      if (r.count !== undefined && r.fired >= r.count) continue;
      r.fired++;
      if (r.delayMs) await new Promise((res) => setTimeout(res, r.delayMs));
      if (r.error === 'none') return; // a delay only
      throw fault(r.error ?? 'EIO', path, op);
    }
  };
  return async (path, create) => {
    await check(path, 'open');
    const io = await base(path, create);
    const wrapped: DeviceIO = {
      read: async (buf, pos) => (await check(path, 'read', pos, buf.length), io.read(buf, pos)),
      write: async (buf, pos) => (await check(path, 'write', pos, buf.length), io.write(buf, pos)),
      sync: async () => (await check(path, 'sync'), io.sync()),
      size: () => io.size(),
      truncate: (n) => io.truncate(n),
      close: () => io.close(),
    };
    return wrapped;
  };
}

/**
 * Test-only power-cut model (HOARDFS_POWERCUT=1): a write reaches the file only at the next
 * sync; until then it lives in this process's memory (reads see it, like the page cache). A
 * SIGKILL, or a close without a sync, loses every unsynced write, as a power cut would.
 */
export function powerCutOpenDevice(base: OpenDevice): OpenDevice {
  return async (path, create) => {
    const io = await base(path, create);
    let pending: { pos: number; buf: Buffer }[] = [];
    const wrapped: DeviceIO = {
      async read(buf, pos) {
        let n = await io.read(buf, pos);
        const end = pos + buf.length;
        for (const w of pending) {
          const a = Math.max(pos, w.pos);
          const b = Math.min(end, w.pos + w.buf.length);
          if (a >= b) continue;
          w.buf.copy(buf, a - pos, a - w.pos, b - w.pos);
          n = Math.max(n, b - pos);
        }
        return n;
      },
      async write(buf, pos) {
        pending.push({ pos, buf: Buffer.from(buf) });
      },
      async sync() {
        const todo = pending;
        pending = [];
        for (const w of todo) await io.write(w.buf, w.pos);
        await io.sync();
      },
      async size() {
        let n = await io.size();
        for (const w of pending) n = Math.max(n, w.pos + w.buf.length);
        return n;
      },
      truncate: (n) => io.truncate(n),
      async close() {
        pending = [];
        await io.close();
      },
    };
    return wrapped;
  };
}

/**
 * The OpenDevice the daemon should use: faulty only when HOARDFS_FAULTS is set, losing unsynced
 * writes only when HOARDFS_POWERCUT is set (tests).
 */
export function openDeviceFromEnv(env: NodeJS.ProcessEnv = process.env, base: OpenDevice = fileOpenDevice): OpenDevice {
  const rules = env.HOARDFS_FAULTS;
  const dev = env.HOARDFS_POWERCUT ? powerCutOpenDevice(base) : base;
  return rules ? faultyOpenDevice(dev, rules) : dev;
}
