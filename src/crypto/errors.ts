// Distinct classes so callers can tell "wrong passphrase" (ask again) from "damaged header"
// (try another copy) from "damaged chunk" (reconstruct from parity) without parsing messages.

export class HeaderError extends Error {
  override name = 'HeaderError';
}

export class WrongSecretError extends Error {
  override name = 'WrongSecretError';
}

export class KeySlotError extends Error {
  override name = 'KeySlotError';
}

export class IntegrityError extends Error {
  override name = 'IntegrityError';
}
