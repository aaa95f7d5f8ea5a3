import { openSync, readSync, closeSync, fstatSync } from 'node:fs';
import { ReadStream, WriteStream } from 'node:tty';

export interface SecretSource {
  passphraseFile?: string;
  keyFile?: string;
  env?: string; // default 'HOARDFS_PASSPHRASE'
  prompt?: string;
  confirm?: boolean;
}

// Same cap as cryptsetup's default keyfile limit; also stops `--key-file /dev/urandom` from
// reading forever.
const MAX_SECRET_FILE = 8 * 1024 * 1024;

function readBounded(path: string, what: string): Buffer {
  const fd = openSync(path, 'r');
  try {
    if (fstatSync(fd).isDirectory()) throw new Error(`${what} ${path} is a directory`);
    const chunks: Buffer[] = [];
    let total = 0;
    for (;;) {
      const b = Buffer.alloc(Math.min(64 * 1024, MAX_SECRET_FILE + 1 - total));
      const n = readSync(fd, b, 0, b.length, null);
      if (n === 0) break;
      chunks.push(b.subarray(0, n));
      total += n;
      if (total > MAX_SECRET_FILE) throw new Error(`${what} ${path} is larger than ${MAX_SECRET_FILE} bytes`);
    }
    const out = Buffer.concat(chunks);
    for (const c of chunks) c.fill(0);
    return out;
  } finally {
    closeSync(fd);
  }
}

function openTty(): { input: ReadStream; output: WriteStream } | undefined {
  let rfd: number, wfd: number;
  try {
    rfd = openSync('/dev/tty', 'r');
  } catch {
    return undefined; // ENXIO: no controlling terminal (daemon, CI, setsid)
  }
  try {
    wfd = openSync('/dev/tty', 'w');
  } catch {
    closeSync(rfd);
    return undefined;
  }
  return { input: new ReadStream(rfd), output: new WriteStream(wfd) };
}

/** Reads one line from the terminal in raw mode, so nothing is echoed. */
function askHidden(input: ReadStream, output: WriteStream, prompt: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const bytes: number[] = [];
    output.write(prompt);
    input.setRawMode(true);
    const finish = (err?: Error) => {
      input.off('data', onData);
      input.setRawMode(false);
      input.pause();
      output.write('\n');
      if (err) {
        bytes.fill(0);
        reject(err);
      } else {
        const out = Buffer.from(bytes);
        bytes.fill(0);
        resolve(out);
      }
    };
    const onData = (d: Buffer) => {
      for (const c of d) {
        if (c === 0x0d || c === 0x0a) return finish();
        if (c === 0x03) return finish(new Error('passphrase entry interrupted'));
        if (c === 0x04) return bytes.length ? finish() : finish(new Error('no passphrase entered'));
        if (c === 0x7f || c === 0x08) {
          // Backspace removes one UTF-8 character, not one byte.
          while (bytes.length && (bytes.pop()! & 0xc0) === 0x80);
          continue;
        }
        if (c === 0x15) { bytes.length = 0; continue; } // Ctrl-U
        bytes.push(c);
      }
      d.fill(0);
    };
    input.on('data', onData);
    input.resume();
  });
}

export async function readSecret(src: SecretSource): Promise<{ secret: Buffer; kind: 'passphrase' | 'keyfile' }> {
  if (src.keyFile !== undefined) {
    const secret = readBounded(src.keyFile, 'key file');
    if (secret.length === 0) throw new Error(`key file ${src.keyFile} is empty`);
    return { secret, kind: 'keyfile' };
  }
  if (src.passphraseFile !== undefined) {
    let secret = readBounded(src.passphraseFile, 'passphrase file');
    // `echo pass > file` adds one newline; strip exactly one so a deliberate trailing newline
    // in the passphrase (second \n) survives.
    if (secret.length && secret[secret.length - 1] === 0x0a) secret = secret.subarray(0, secret.length - 1);
    if (secret.length === 0) throw new Error(`passphrase file ${src.passphraseFile} is empty`);
    return { secret, kind: 'passphrase' };
  }
  const envName = src.env ?? 'HOARDFS_PASSPHRASE';
  const fromEnv = process.env[envName];
  if (fromEnv !== undefined) {
    if (fromEnv === '') throw new Error(`${envName} is set but empty`);
    return { secret: Buffer.from(fromEnv, 'utf8'), kind: 'passphrase' };
  }
  const tty = openTty();
  if (!tty) {
    throw new Error(
      `no passphrase available and no terminal to ask on: use --key-file FILE, --passphrase-file FILE, or set ${envName}`,
    );
  }
  try {
    const first = await askHidden(tty.input, tty.output, src.prompt ?? 'Passphrase: ');
    if (first.length === 0) throw new Error('empty passphrase');
    if (src.confirm) {
      const second = await askHidden(tty.input, tty.output, 'Repeat passphrase: ');
      const same = first.equals(second);
      second.fill(0);
      if (!same) {
        first.fill(0);
        throw new Error('passphrases do not match');
      }
    }
    return { secret: first, kind: 'passphrase' };
  } finally {
    tty.input.destroy();
    tty.output.destroy();
  }
}
