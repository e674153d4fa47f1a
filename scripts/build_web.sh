#!/usr/bin/env bash
# Build the browser demo (web/) into lighthmr_ros/web/static, served by `lighthmr serve`.
# Idempotent: `npm ci` runs only when package-lock.json changes, `vite build` only when the
# sources change (sha256 stamps). Usage: scripts/build_web.sh [--force]
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
web="$root/web"
out="$root/lighthmr_ros/web/static"
force=0
[[ "${1:-}" == "--force" ]] && force=1

if ! command -v npm >/dev/null 2>&1; then
  echo "build_web.sh: npm is missing; install Node.js 20 or newer with npm (e.g. apt-get install -y nodejs npm)." >&2
  exit 1
fi

# sha256 over the listed files and folders (paths and contents), stable across machines.
hash_of() {
  (cd "$web" && find "$@" -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) | sha256sum | cut -d' ' -f1
}

deps_hash="$(hash_of package.json package-lock.json)"
deps_stamp="$web/node_modules/.lighthmr-deps-stamp"
if [[ $force == 1 || ! -f "$deps_stamp" || "$(cat "$deps_stamp")" != "$deps_hash" ]]; then
  echo "build_web.sh: installing front-end packages (npm ci)"
  (cd "$web" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$deps_hash" >"$deps_stamp"
fi

src_hash="$(hash_of package.json package-lock.json vite.config.js index.html src)"
build_stamp="$out/.build-stamp"
if [[ $force == 0 && -f "$out/index.html" && -f "$build_stamp" && "$(cat "$build_stamp")" == "$src_hash" ]]; then
  echo "build_web.sh: front end up to date ($out)"
  exit 0
fi
echo "build_web.sh: building the front end into $out"
(cd "$web" && npx --no-install vite build --logLevel warn)
echo "$src_hash" >"$build_stamp"
echo "build_web.sh: done"
