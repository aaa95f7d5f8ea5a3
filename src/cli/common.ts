// Helpers shared by the CLI commands.
import { readSecret, type SecretSource } from '../crypto/index.ts';
import type { Options } from './args.ts';
import { lockHolder, Volume, VolumeError, type Secret } from '../volume/volume.ts';
import { readConfig } from '../volume/config.ts';
import { callControl } from '../volume/control.ts';

export const secretOptions: Options = {
  'passphrase-file': { type: 'string' },
  'key-file': { type: 'string' },
};

export function secretGetter(v: Record<string, unknown>, prompt = 'Passphrase: '): () => Promise<Secret> {
  return () =>
    readSecret({ passphraseFile: v['passphrase-file'] as string | undefined, keyFile: v['key-file'] as string | undefined, prompt } satisfies SecretSource);
}

export function out(s: string): void {
  process.stdout.write(s + '\n');
}

/** Opens a volume that is not mounted; a mounted one is refused with a pointer to the daemon. */
export async function openOffline(dir: string, v: Record<string, unknown>, o: { lock?: boolean; readonly?: boolean } = {}): Promise<Volume> {
  return Volume.open({ dir, getSecret: secretGetter(v), lock: o.lock ?? true, readonly: o.readonly, fs: { flushIntervalMs: 0 } });
}

/** Runs cmd in the daemon when the volume is mounted; undefined when it is not. */
export async function viaDaemon(dir: string, cmd: string, args: Record<string, unknown> = {}, onProgress?: (p: Record<string, unknown>) => void): Promise<unknown> {
  const c = readConfig(dir);
  if (!lockHolder(dir)) return undefined;
  const r = await callControl(c.volumeId, cmd, args, onProgress);
  if (!r) throw new VolumeError(`volume ${dir} is in use, but its daemon does not answer`);
  if (!r.ok) throw new VolumeError(r.error ?? 'the daemon failed');
  return r.result ?? null;
}

