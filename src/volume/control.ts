// The control socket of a mounted volume: commands that need the open volume (stats, gc, status,
// scrub, key slots) reach the daemon through it instead of opening the volume a second time.
// Requests and replies are newline-delimited JSON; long commands stream progress lines.
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { mkdirSync, readFileSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { join } from 'node:path';

export const RUN_DIR = process.env.HOARDFS_RUN_DIR ?? '/run/hoardfs';

export interface MountRecord {
  pid: number;
  dir: string;
  mountpoint: string;
  volumeId: string;
}

export function socketPath(volumeId: string): string {
  return join(RUN_DIR, `${volumeId}.sock`);
}

export function recordPath(volumeId: string): string {
  return join(RUN_DIR, `${volumeId}.json`);
}

export function writeMountRecord(r: MountRecord): void {
  mkdirSync(RUN_DIR, { recursive: true, mode: 0o700 });
  writeFileSync(recordPath(r.volumeId), JSON.stringify(r), { mode: 0o600 });
}

export function readMountRecord(volumeId: string): MountRecord | undefined {
  try {
    return JSON.parse(readFileSync(recordPath(volumeId), 'utf8')) as MountRecord;
  } catch {
    return undefined;
  }
}

export function removeMountRecord(volumeId: string): void {
  rmSync(recordPath(volumeId), { force: true });
  rmSync(socketPath(volumeId), { force: true });
}

export type Progress = (p: Record<string, unknown>) => void;
export type Handler = (args: Record<string, unknown>, progress: Progress) => Promise<unknown>;

export function serveControl(volumeId: string, handlers: Record<string, Handler>): Server {
  mkdirSync(RUN_DIR, { recursive: true, mode: 0o700 });
  const path = socketPath(volumeId);
  rmSync(path, { force: true });
  const server = createServer((sock: Socket) => {
    let buf = '';
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      const line = buf.slice(0, nl);
      buf = '';
      void (async () => {
        const send = (o: unknown) => {
          if (!sock.destroyed) sock.write(JSON.stringify(o) + '\n');
        };
        try {
          const req = JSON.parse(line) as { cmd: string; args?: Record<string, unknown> };
          const h = handlers[req.cmd];
          if (!h) throw new Error(`unknown control command ${req.cmd}`);
          const result = await h(req.args ?? {}, (p) => send({ progress: p }));
          send({ ok: true, result });
        } catch (e) {
          send({ ok: false, error: (e as Error).message });
        }
        sock.end();
      })();
    });
    sock.on('error', () => {});
  });
  server.listen(path, () => chmodSync(path, 0o600));
  return server;
}

/** Sends one command to a mounted volume's daemon; undefined when no daemon answers. */
export function callControl(volumeId: string, cmd: string, args: Record<string, unknown> = {}, onProgress?: Progress): Promise<{ ok: boolean; result?: unknown; error?: string } | undefined> {
  return new Promise((resolve) => {
    const sock = createConnection(socketPath(volumeId));
    let buf = '';
    let done = false;
    sock.setEncoding('utf8');
    sock.on('connect', () => sock.write(JSON.stringify({ cmd, args }) + '\n'));
    sock.on('data', (d: string) => {
      buf += d;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        const msg = JSON.parse(line);
        if (msg.progress) onProgress?.(msg.progress);
        else {
          done = true;
          resolve(msg);
        }
      }
    });
    sock.on('error', () => {
      if (!done) resolve(undefined);
      done = true;
    });
    sock.on('close', () => {
      if (!done) resolve(undefined);
    });
  });
}
