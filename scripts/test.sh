#!/usr/bin/env bash
# The whole test suite: type-check, unit tests of each layer, and tests on real FUSE mounts.
# Ends with the line "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1
export HOARDFS_KDF="${HOARDFS_KDF:-64,1,1}" # documented low-cost key derivation for tests (docs/testing.md)
export HOARDFS_SEED="${HOARDFS_SEED:-20261130}" # torture generators: a fixed seed in CI, random in soak runs
files=$(find test -name '*.test.ts' | sort)
node --import tsx --test --test-concurrency=2 --test-reporter=./test/reporter.mjs $files
