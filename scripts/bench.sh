#!/usr/bin/env bash
# npm run bench [-- --quick] : hoardfs side by side with the passthrough, gocryptfs, zfs-fuse and
# tmpfs (bench/run.ts; results in bench/results/last.md and docs/benchmarks.md). Needs root.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >/dev/null || exit 1
need=()
command -v fio >/dev/null || need+=(fio)
command -v gocryptfs >/dev/null || need+=(gocryptfs)
if ((${#need[@]})); then
  echo "bench: installing ${need[*]}" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null || echo "bench: could not install ${need[*]}" >&2
fi
if ! command -v zpool >/dev/null; then
  # zfs-fuse is in Debian bookworm main (0.7.0); if the mirror lacks it, the bench says so and skips it.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq zfs-fuse >/dev/null 2>&1 || echo "bench: zfs-fuse is not installable here: skipped" >&2
fi
# Low-cost key derivation for the bench volumes (setup only; the data path does not depend on it).
export HOARDFS_KDF="${HOARDFS_KDF:-64,1,1}"
exec node --import tsx bench/run.ts "$@"
