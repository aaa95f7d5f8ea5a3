// Our N-API addons (native/, built by scripts/setup.sh). Every one of them has a JavaScript
// fallback that gives the same bytes, so a missing build is not an error here: the caller gets
// null and uses its fallback.
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const load = createRequire(import.meta.url);

export function loadAddon<T>(name: 'hoardfs_aead' | 'hoardfs_cdc' | 'hoardfs_gf'): T | null {
  try {
    return load(fileURLToPath(new URL(`../native/build/Release/${name}.node`, import.meta.url))) as T;
  } catch {
    return null;
  }
}
