// hoardfs keyslot list|add|remove|change, hoardfs header dump|backup|restore.
import { resolve } from 'node:path';
import { readSecret } from '../crypto/index.ts';
import type { Handler } from '../volume/control.ts';
import { addKey, backupHeader, changeKey, dumpHeader, readKeyHeader, removeKey, restoreHeader } from '../volume/keys.ts';
import { lockHolder, VolumeError, type Secret, type Volume } from '../volume/volume.ts';
import { parse, parseInteger, UsageError } from './args.ts';
import * as common from './common.ts';


const enc = (s: Secret) => ({ secret: s.secret.toString('base64'), kind: s.kind });
const dec = (o: unknown): Secret => {
  const x = o as { secret: string; kind: 'passphrase' | 'keyfile' };
  return { secret: Buffer.from(x.secret, 'base64'), kind: x.kind };
};

async function keyslot(argv: string[]): Promise<void> {
  const h = common;
  const usage =
    'hoardfs keyslot list VOLUME [--json] | add VOLUME [--slot N] [--new-passphrase-file F | --new-key-file F] | remove VOLUME --slot N | change VOLUME [--new-passphrase-file F | --new-key-file F]  (each with --passphrase-file F or --key-file F for an existing key)';
  const [sub, ...rest] = argv;
  if (!sub || !['list', 'add', 'remove', 'change'].includes(sub)) throw new UsageError(sub ? `unknown keyslot command '${sub}'` : 'missing keyslot command', usage);
  const { values: v, positionals } = parse(
    rest,
    { json: { type: 'boolean' }, slot: { type: 'string' }, 'new-passphrase-file': { type: 'string' }, 'new-key-file': { type: 'string' }, ...h.secretOptions },
    usage,
    { min: 1, max: 1 },
  );
  const dir = resolve(positionals[0]);
  if (sub === 'list') {
    const info = dumpHeader(await readKeyHeader(dir)) as { slots: { index: number; kind: string; kdf: { memoryKiB: number; passes: number; parallelism: number } }[] };
    if (v.json) h.out(JSON.stringify(info.slots));
    else for (const s of info.slots) h.out(`slot ${s.index}: ${s.kind}, argon2id m=${s.kdf.memoryKiB} KiB t=${s.kdf.passes} p=${s.kdf.parallelism}`);
    return;
  }
  const existing = await readSecret({ passphraseFile: v['passphrase-file'] as string | undefined, keyFile: v['key-file'] as string | undefined, prompt: 'Existing passphrase: ' });
  const getNew = () =>
    readSecret({ passphraseFile: v['new-passphrase-file'] as string | undefined, keyFile: v['new-key-file'] as string | undefined, env: 'HOARDFS_NEW_PASSPHRASE', prompt: 'New passphrase: ', confirm: true });
  const slot = v.slot !== undefined ? parseInteger(v.slot as string, '--slot', 0, 31) : undefined;
  if (sub === 'remove' && slot === undefined) throw new UsageError('keyslot remove needs --slot N', usage);
  const args: Record<string, unknown> = { sub, existing: enc(existing), slot };
  if (sub !== 'remove') args.next = enc(await getNew());
  let result: unknown;
  if (lockHolder(dir)) result = await h.viaDaemon(dir, 'keyslot', args);
  else {
    const vol = await h.openOffline(dir, v);
    try {
      result = await applyKeyslot(vol, args);
    } finally {
      await vol.close();
    }
  }
  h.out(sub === 'add' ? `added key slot ${result}` : sub === 'remove' ? `removed key slot ${slot}` : `passphrase changed (now in slot ${result})`);
}

async function applyKeyslot(vol: Volume, a: Record<string, unknown>): Promise<unknown> {
  const existing = dec(a.existing);
  switch (a.sub) {
    case 'add':
      return addKey(vol, existing, dec(a.next), a.slot as number | undefined);
    case 'remove':
      await removeKey(vol, a.slot as number, existing);
      return a.slot;
    case 'change':
      return changeKey(vol, existing, dec(a.next));
  }
  throw new VolumeError(`unknown keyslot command ${String(a.sub)}`);
}

async function header(argv: string[]): Promise<void> {
  const h = common;
  const usage = 'hoardfs header dump VOLUME [--json] | backup VOLUME FILE | restore VOLUME FILE';
  const [sub, ...rest] = argv;
  if (!sub || !['dump', 'backup', 'restore'].includes(sub)) throw new UsageError(sub ? `unknown header command '${sub}'` : 'missing header command', usage);
  const { values: v, positionals } = parse(rest, { json: { type: 'boolean' } }, usage, sub === 'dump' ? { min: 1, max: 1 } : { min: 2, max: 2 });
  const dir = resolve(positionals[0]);
  if (sub === 'dump') {
    const info = dumpHeader(await readKeyHeader(dir));
    if (v.json) h.out(JSON.stringify(info));
    else h.out(JSON.stringify(info, null, 2));
  } else if (sub === 'backup') {
    await backupHeader(dir, positionals[1]);
    h.out(`key header of ${positionals[0]} saved to ${positionals[1]} (keep it safe: with a passphrase it opens the volume)`);
  } else {
    if (lockHolder(dir)) throw new VolumeError(`volume ${positionals[0]} is mounted; unmount it before restoring its header`);
    const n = await restoreHeader(dir, positionals[1]);
    h.out(`key header restored from ${positionals[1]} onto every device (${n} key slots)`);
  }
}

export const keyCommands: Record<string, (argv: string[]) => Promise<void>> = { keyslot, header };

export function keyDaemonHandlers(vol: Volume): Record<string, Handler> {
  return { keyslot: async (a) => applyKeyslot(vol, a) };
}
