#!/usr/bin/env bash
# Build test-only ROS interfaces (tf2_msgs/TFMessage) into a venv made from ROS 2 wheels, where they
# have no wheel. Run after scripts/build_msgs.sh (which points the wheels' CMake files at this
# interpreter). Usage: tests/interfaces/build_interfaces.sh VENV
set -euo pipefail
VENV=$(cd "${1:-.venv}" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PY="$VENV/bin/python"
export AMENT_PREFIX_PATH="$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export CMAKE_PREFIX_PATH="$VENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
export PATH="$VENV/bin:$PATH"
for pkg in tf2_msgs; do
  BUILD="$ROOT/build/test_interfaces/$pkg"
  mkdir -p "$BUILD"
  cmake -S "$HERE/$pkg" -B "$BUILD" -DCMAKE_INSTALL_PREFIX="$VENV" -DBUILD_TESTING=OFF \
    -DPython3_EXECUTABLE="$PY" -DPYTHON_EXECUTABLE="$PY" -DCMAKE_BUILD_TYPE=Release \
    > "$BUILD/configure.log" 2>&1 || { tail -40 "$BUILD/configure.log"; exit 1; }
  cmake --build "$BUILD" -j2 > "$BUILD/build.log" 2>&1 || { tail -60 "$BUILD/build.log"; exit 1; }
  cmake --install "$BUILD" > "$BUILD/install.log" 2>&1 || { tail -40 "$BUILD/install.log"; exit 1; }
done
