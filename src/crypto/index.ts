// Public surface of src/crypto. Other layers import only from here.
export { HeaderError, WrongSecretError, KeySlotError, IntegrityError } from './errors.ts';
export { hkdf, argon2id, calibrateKdf, kdfParamsFromEnv, type KdfParams } from './kdf.ts';
export { afSplit, afMerge } from './af.ts';
export {
  KEY_HEADER_SIZE, MAX_SLOTS, encodeKeyHeader, decodeKeyHeader, newKeyHeader, addSlot, removeSlot, unlock,
  headerInfo, newerHeader, type Cipher, type SlotInfo, type KeyHeader,
} from './header.ts';
export { VolumeKeys, chunkId } from './keys.ts';
export { padme, sealedSize, sealChunk, sealChunks, sealChunkJs, openChunk, openChunkJs, chunkIds, nativeEnvelopes } from './envelope.ts';
export { readSecret, type SecretSource } from './secret.ts';
