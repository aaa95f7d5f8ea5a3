// hoardfs keyslot list|add|remove|change, hoardfs header dump|backup|restore.
import { resolve } from 'node:path';
import { readSecret } from '../crypto/index.ts';
import type { Handler } from '../volume/control.ts';
import { addKey, backupHeader, changeKey, dumpHeader, readKeyHeader, readKeyState, removeKey, restoreHeader } from '../volume/keys.ts';
import { reencrypt, type ReencryptReport } from '../volume/reencrypt.ts';
import { lockHolder, Volume, VolumeError, type Secret } from '../volume/volume.ts';
import { formatBytes, parse, parseInteger, parseSize, UsageError } from './args.ts';
import * as common from './common.ts';
import { progressBar } from './progress.ts';


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
    const info = dumpHeader(await readKeyHeader(dir), await readKeyState(dir));
    if (v.json) h.out(JSON.stringify(info));
    else h.out(JSON.stringify(info, null, 2));
  } else if (sub === 'backup') {
    await backupHeader(dir, positionals[1]);
    h.out(`key header of ${positionals[0]} saved to ${positionals[1]} (keep it safe: with a passphrase it opens the volume)`);
  } else {
    if (lockHolder(dir)) throw new VolumeError(`volume ${positionals[0]} is mounted; unmount it before restoring its header`);
    const r = await restoreHeader(dir, positionals[1]);
    h.out(`key header restored from ${positionals[1]} onto every device (${r.slots} key slots)`);
    if (r.sameKey === false) {
      process.stderr.write(
        `hoardfs header: warning: this backup holds a different master key than the header it replaced; ` +
          `if the volume was re-encrypted after the backup was made, it will not open the volume\n`,
      );
    }
  }
}

async function reencryptCmd(argv: string[]): Promise<void> {
  const h = common;
  const usage = 'hoardfs reencrypt VOLUME [--max-rate SIZE] [--json] [--passphrase-file F | --key-file F]';
  const { values: v, positionals } = parse(argv, { json: { type: 'boolean' }, 'max-rate': { type: 'string' }, ...h.secretOptions }, usage, { min: 1, max: 1 });
  const dir = resolve(positionals[0]);
  const maxRate = v['max-rate'] !== undefined ? parseSize(v['max-rate'] as string, '--max-rate') : 0;
  const secret = await readSecret({ passphraseFile: v['passphrase-file'] as string | undefined, keyFile: v['key-file'] as string | undefined, prompt: 'Passphrase: ' });
  const bar = progressBar('reencrypt');
  let r: ReencryptReport | undefined;
  try {
    r = (await h.viaDaemon(dir, 'reencrypt', { existing: enc(secret), maxRate }, bar.update)) as ReencryptReport | undefined;
    if (r === undefined) {
      const vol = await Volume.open({ dir, lock: true, getSecret: async () => ({ secret: Buffer.from(secret.secret), kind: secret.kind }), fs: { flushIntervalMs: 0 } });
      try {
        r = await reencrypt(vol, secret, { maxRate, progress: bar.update });
      } finally {
        await vol.close();
      }
    }
  } finally {
    secret.secret.fill(0);
    bar.done();
  }
  if (v.json) return h.out(JSON.stringify(r));
  h.out(
    `${r.resumed ? 'resumed and finished' : 'finished'}: master key rotated to key generation ${r.keyGeneration}; ` +
      `${r.chunks} chunks (${formatBytes(r.bytes)}) re-sealed in ${r.seconds.toFixed(1)} s (${formatBytes(r.bytesPerSec)}/s); metadata re-keyed`,
  );
  if (!r.resumed) {
    h.out(`key slot ${r.slot} now holds the new master key`);
    if (r.droppedSlots.length) {
      h.out(
        `dropped key slot${r.droppedSlots.length > 1 ? 's' : ''} ${r.droppedSlots.join(', ')}: their passphrases were not given, so they could not ` +
          `be re-wrapped (as LUKS2 reencrypt does); add them again with 'hoardfs keyslot add'`,
      );
    }
  }
  h.out(`header backups and metadata snapshots made before the rotation no longer open the volume: make a new backup with 'hoardfs header backup'`);
}

export const keyCommands: Record<string, (argv: string[]) => Promise<void>> = { keyslot, header, reencrypt: reencryptCmd };

export function keyDaemonHandlers(vol: Volume): Record<string, Handler> {
  return {
    keyslot: async (a) => applyKeyslot(vol, a),
    reencrypt: async (a, progress) => reencrypt(vol, dec(a.existing), { maxRate: Number(a.maxRate ?? 0), progress }),
  };
}
