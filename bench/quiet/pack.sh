#!/usr/bin/env bash
# Bundle what a pinned bench:compare run on a quiet many-core machine needs (../shared/QUIET-BENCH.md) into
# .quiet/bundle.tar.xz at the repository root: this node binary, the built dist/, the sources the bench
# imports through tsx, package.json, production node_modules plus the bench tools' modules, and redis-server
# with its shared libraries behind a wrapper. git must ignore .quiet (the lead adds it to .git/info/exclude).
#   bench/quiet/pack.sh            then: bench/quiet/run.sh (there, or here to try it)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
OUTDIR=$ROOT/.quiet
STAGE=$(mktemp -d /tmp/fhg-quiet-pack.XXXXXX)
trap 'rm -rf "$STAGE"' EXIT

echo "building dist/"
npm run -s build

mkdir -p "$STAGE/bin" "$STAGE/lib" "$STAGE/app"
# the runtime: the node binary this tree was built and tested with (NodeSource build, glibc 2.28)
cp "$(command -v node)" "$STAGE/bin/node"
# redis-server and the libraries it links that a bare machine may lack; the wrapper sets LD_LIBRARY_PATH for it alone
REDIS=$(command -v redis-server || true)
if [ -n "$REDIS" ]; then
  cp "$REDIS" "$STAGE/lib/redis-server.bin"
  ldd "$REDIS" | awk '/=> \// { print $3 }' | grep -Ev '/(libc|libm|libpthread|libdl|librt|ld-linux[^/]*)\.so' | while read -r so; do cp -L "$so" "$STAGE/lib/"; done
  cat > "$STAGE/bin/redis-server" <<'WRAP'
#!/bin/sh
here=$(dirname "$(readlink -f "$0")")/../lib
LD_LIBRARY_PATH="$here${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "$here/redis-server.bin" "$@"
WRAP
  chmod +x "$STAGE/bin/redis-server"
fi
# the app: dist/ for the CLI as installed; the TypeScript sources for the bench children (run through tsx)
cp -r package.json package-lock.json tsconfig.json index.ts dist lib plugins bin types bench "$STAGE/app/"
mkdir -p "$STAGE/app/test" && cp -r test/helpers "$STAGE/app/test/"
node bench/quiet/modules.mjs | while read -r m; do mkdir -p "$STAGE/app/$(dirname "$m")"; cp -r "$m" "$STAGE/app/$m"; done
[ -d node_modules/.bin ] && mkdir -p "$STAGE/app/node_modules/.bin"
git rev-parse HEAD > "$STAGE/app/COMMIT" 2>/dev/null || true
git status --porcelain > "$STAGE/app/DIRTY" 2>/dev/null || true

mkdir -p "$OUTDIR"
rm -f "$OUTDIR/bundle.tar.xz"
echo "compressing (xz -6, all cores)"
tar -C "$STAGE" -cf - bin lib app | xz -6 -T0 > "$OUTDIR/bundle.tar.xz"
ls -l "$OUTDIR/bundle.tar.xz" | awk '{ printf "%s: %.1f MB\n", $9, $5 / 1048576 }'
size=$(stat -c %s "$OUTDIR/bundle.tar.xz")
if [ "$size" -gt $((60 * 1048576)) ]; then echo "!! over 60 MB: the device takes 64 MiB of working tree" >&2; exit 1; fi
