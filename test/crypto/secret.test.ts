import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { readSecret } from '../../src/crypto/index.ts';

let dir: string;
const saved = process.env.HOARDFS_PASSPHRASE;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'hoardfs-secret-'));
  delete process.env.HOARDFS_PASSPHRASE;
});
after(() => {
  rmSync(dir, { recursive: true, force: true });
  if (saved !== undefined) process.env.HOARDFS_PASSPHRASE = saved;
});
const file = (name: string, content: string | Buffer) => {
  const p = join(dir, name);
  writeFileSync(p, content);
  return p;
};

test('key file: raw bytes, nothing stripped; empty is an error', async () => {
  const bytes = Buffer.from([0, 1, 2, 10, 0xff, 10]);
  assert.deepEqual(await readSecret({ keyFile: file('k', bytes) }), { secret: bytes, kind: 'keyfile' });
  await assert.rejects(readSecret({ keyFile: file('empty', '') }), /key file .* is empty/);
  await assert.rejects(readSecret({ keyFile: join(dir, 'missing') }), /ENOENT/);
  const d = join(dir, 'adir');
  mkdirSync(d);
  await assert.rejects(readSecret({ keyFile: d }), /directory|EISDIR/);
});

test('passphrase file: exactly one trailing newline stripped; empty is an error', async () => {
  assert.equal((await readSecret({ passphraseFile: file('p1', 'secret\n') })).secret.toString(), 'secret');
  assert.equal((await readSecret({ passphraseFile: file('p2', 'secret') })).secret.toString(), 'secret');
  assert.equal((await readSecret({ passphraseFile: file('p3', 'secret\n\n') })).secret.toString(), 'secret\n');
  assert.equal((await readSecret({ passphraseFile: file('p4', ' sp ace \r\n') })).secret.toString(), ' sp ace \r');
  assert.equal((await readSecret({ passphraseFile: file('p5', 'x') })).kind, 'passphrase');
  await assert.rejects(readSecret({ passphraseFile: file('p6', '') }), /empty/);
  await assert.rejects(readSecret({ passphraseFile: file('p7', '\n') }), /empty/);
});

test('order: key file > passphrase file > env', async () => {
  process.env.HOARDFS_PASSPHRASE = 'from-env';
  try {
    const k = file('ord-k', 'K');
    const p = file('ord-p', 'P\n');
    assert.deepEqual(await readSecret({ keyFile: k, passphraseFile: p }), { secret: Buffer.from('K'), kind: 'keyfile' });
    assert.deepEqual(await readSecret({ passphraseFile: p }), { secret: Buffer.from('P'), kind: 'passphrase' });
    assert.deepEqual(await readSecret({}), { secret: Buffer.from('from-env'), kind: 'passphrase' });
  } finally {
    delete process.env.HOARDFS_PASSPHRASE;
  }
});

test('env: custom variable name; set-but-empty is an error', async () => {
  process.env.HOARDFS_TEST_PW = 'pässwörd';
  process.env.HOARDFS_TEST_EMPTY = '';
  try {
    assert.deepEqual((await readSecret({ env: 'HOARDFS_TEST_PW' })).secret, Buffer.from('pässwörd', 'utf8'));
    await assert.rejects(readSecret({ env: 'HOARDFS_TEST_EMPTY' }), /set but empty/);
  } finally {
    delete process.env.HOARDFS_TEST_PW;
    delete process.env.HOARDFS_TEST_EMPTY;
  }
});

test('no terminal and nothing else: the error lists the options', () => {
  // detached => setsid(): the child has no controlling terminal, so /dev/tty cannot be opened.
  const index = fileURLToPath(new URL('../../src/crypto/index.ts', import.meta.url));
  const script = file('notty.mts', `
    import { readSecret } from ${JSON.stringify(index)};
    readSecret({}).then(() => console.log('UNEXPECTED'), (e) => console.log('ERR ' + e.message));
  `);
  const env = { ...process.env };
  delete env.HOARDFS_PASSPHRASE;
  const r = spawnSync(process.execPath, ['--import', 'tsx', script], {
    env, detached: true, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 30_000,
  } as never);
  const out = String(r.stdout) + String(r.stderr);
  assert.match(out, /ERR no passphrase available/, out);
  assert.match(out, /--key-file/);
  assert.match(out, /--passphrase-file/);
  assert.match(out, /HOARDFS_PASSPHRASE/);
});
