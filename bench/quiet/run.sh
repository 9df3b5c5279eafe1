#!/usr/bin/env bash
# On the quiet many-core machine: unpack .quiet/bundle.tar.xz (made by bench/quiet/pack.sh) to /tmp, put its
# bin/ (node, redis-server) first on PATH, run bench:compare with every server pinned (>= 6 cores), and write
# the report and the log to $OUT. Flags pass through to bench/compare.ts (--rounds=5 --duration=5 ...).
#   OUT=/tmp/out bench/quiet/run.sh [--rounds=N --duration=S --setups=a,b,...]
set -euo pipefail
cd "$(dirname "$0")/../.."
BUNDLE=${QUIET_BUNDLE:-$PWD/.quiet/bundle.tar.xz}
OUT=${OUT:-/tmp/out}
W=${QUIET_DIR:-/tmp/fhg-quiet}
mkdir -p "$OUT"
t0=$(date +%s)
rm -rf "$W" && mkdir -p "$W"
xz -dc -T0 "$BUNDLE" | tar -C "$W" -xf -
export PATH="$W/bin:$PATH"
cd "$W/app"
{
  echo "unpacked in $(( $(date +%s) - t0 )) s; commit $(cat COMMIT 2>/dev/null || echo '?')$( [ -s DIRTY ] && echo ' (+ uncommitted changes)')"
  echo "node $(node --version) at $(command -v node); $(redis-server --version 2>&1 | head -1 || echo 'no redis-server')"
  echo "$(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'); taskset: $(command -v taskset || echo none); load $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$OUT/machine.txt"
BENCH_CLI=dist BENCH_OUT="$OUT/compare.md" NODE_ENV=production node --import tsx bench/compare.ts "$@" 2>&1 | tee "$OUT/compare.log"
echo "total $(( $(date +%s) - t0 )) s" | tee -a "$OUT/machine.txt"
