import { createHmac } from 'node:crypto';
import { inspect } from 'node:util';
import { hkdf } from './kdf.ts';
import type { Cipher } from './header.ts';

// One info string per purpose: compromise or misuse of one subkey (e.g. the gear key, which
// influences observable chunk boundaries) tells nothing about the others.
export const SUBKEY_INFO = {
  id: 'hoardfs chunk-id',
  seal: 'hoardfs chunk-seal',
  meta: 'hoardfs metadata',
  gear: 'hoardfs gear',
} as const;

export class VolumeKeys {
  readonly cipher: Cipher;
  readonly idKey: Buffer;
  readonly sealKey: Buffer;
  readonly metaKey: Buffer;
  readonly gearKey: Buffer;
  readonly #masterKey: Buffer;
  #wiped = false;

  private constructor(masterKey: Buffer, cipher: Cipher) {
    this.cipher = cipher;
    this.#masterKey = Buffer.from(masterKey); // own copy, so wipe() cannot zero the caller's buffer
    this.idKey = hkdf(masterKey, SUBKEY_INFO.id);
    this.sealKey = hkdf(masterKey, SUBKEY_INFO.seal);
    this.metaKey = hkdf(masterKey, SUBKEY_INFO.meta);
    this.gearKey = hkdf(masterKey, SUBKEY_INFO.gear);
  }

  static derive(masterKey: Buffer, cipher: Cipher): VolumeKeys {
    if (!Buffer.isBuffer(masterKey) || masterKey.length !== 32) throw new RangeError('master key must be a 32-byte Buffer');
    if (cipher !== 'aes-256-gcm' && cipher !== 'none') throw new RangeError(`unknown cipher ${String(cipher)}`);
    return new VolumeKeys(masterKey, cipher);
  }

  /** The subkeys a worker thread needs to cut, id and seal chunks (never the master key). */
  exportForWorker(): { cipher: Cipher; idKey: Uint8Array; sealKey: Uint8Array; gearKey: Uint8Array } {
    this.assertLive();
    return { cipher: this.cipher, idKey: new Uint8Array(this.idKey), sealKey: new Uint8Array(this.sealKey), gearKey: new Uint8Array(this.gearKey) };
  }

  /** The worker side of exportForWorker: keys that can id and seal, with no master or metadata key. */
  static forWorker(k: { cipher: Cipher; idKey: Uint8Array; sealKey: Uint8Array; gearKey: Uint8Array }): VolumeKeys {
    const v = new VolumeKeys(Buffer.alloc(32), k.cipher);
    Buffer.from(k.idKey).copy(v.idKey);
    Buffer.from(k.sealKey).copy(v.sealKey);
    Buffer.from(k.gearKey).copy(v.gearKey);
    v.metaKey.fill(0);
    return v;
  }

  get wiped(): boolean {
    return this.#wiped;
  }

  /** Throws after wipe(): an all-zero key would otherwise silently produce wrong ids and weak seals. */
  assertLive(): void {
    if (this.#wiped) throw new Error('volume keys have been wiped');
  }

  wipe(): void {
    for (const b of [this.#masterKey, this.idKey, this.sealKey, this.metaKey, this.gearKey]) b.fill(0);
    this.#wiped = true;
  }

  // Keys must not end up in logs or crash dumps via console.log / JSON.stringify.
  [inspect.custom](): string {
    return `VolumeKeys { cipher: '${this.cipher}'${this.#wiped ? ', wiped' : ''}, keys: <redacted> }`;
  }
  toJSON(): object {
    return { cipher: this.cipher, keys: '<redacted>' };
  }
}

export function chunkId(keys: VolumeKeys, data: Uint8Array): Buffer {
  keys.assertLive();
  return createHmac('sha256', keys.idKey).update(data).digest();
}
