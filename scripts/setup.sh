#!/usr/bin/env bash
# Installs everything hoardfs needs on a fresh Debian machine (run as root), then builds the
# native FUSE binding. Safe to run again: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(fuse3 libfuse3-dev pkg-config make g++ python3 rsync attr acl libcap2-bin sqlite3 git tar)
missing=()
for p in "${PKGS[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p"); done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Native addons build against the machine's Node headers (no header download is possible here).
[[ -f /usr/include/node/node_api.h ]] && export npm_config_nodedir=/usr

# npm ci only when the lock file changed since the last install (it recompiles SQLite: minutes).
stamp=node_modules/.hoardfs-lock-stamp
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
  echo "setup: npm ci"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$want" > "$stamp"
fi

stale=0
for pair in hoardfs_fuse.c:hoardfs_fuse.node hoardfs_cdc.c:hoardfs_cdc.node hoardfs_gf.c:hoardfs_gf.node hoardfs_aead.c:hoardfs_aead.node; do
  src=native/${pair%%:*} out=native/build/Release/${pair##*:}
  [[ -f $out && ! $src -nt $out && ! native/binding.gyp -nt $out && ! native/hoardfs_args.h -nt $out ]] || stale=1
done
if ((stale)); then
  echo "setup: building the native addons (FUSE binding, chunker, parity, chunk envelopes)"
  npx node-gyp rebuild --directory native --loglevel=error >/dev/null
fi

modprobe fuse 2>/dev/null || true
[[ -e /dev/fuse ]] || { echo "setup: /dev/fuse is missing: this machine cannot mount FUSE filesystems" >&2; exit 1; }
mkdir -p /run/hoardfs
echo "setup: done"
