#!/usr/bin/env bash
# Build the package's messages (rosidl) with plain CMake against the ROS 2 Jazzy wheels in the venv,
# and install the generated Python package into the venv. On a real ROS 2 machine use colcon instead.
# Usage: scripts/build_msgs.sh VENV
set -euo pipefail
VENV=$(cd "${1:-.venv}" && pwd)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD="$ROOT/build/msgs"
PY="$VENV/bin/python"

# The wheels' exported CMake files name the include dirs of the machine that built them;
# point them at this interpreter's headers and numpy's (idempotent).
PY_INC=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['include'])")
NP_INC=$("$PY" -c "import numpy; print(numpy.get_include())")
for f in "$VENV"/share/*/cmake/*__rosidl_generator_pyExport.cmake; do
  if grep -q "/opt/python/cp311-cp311" "$f"; then
    sed -i -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$NP_INC#g" \
           -e "s#/opt/python/cp311-cp311/include/python3.11#$PY_INC#g" "$f"
  fi
done

export AMENT_PREFIX_PATH="$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export CMAKE_PREFIX_PATH="$VENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
export PATH="$VENV/bin:$PATH"
mkdir -p "$BUILD"
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_INSTALL_PREFIX="$VENV" -DBUILD_TESTING=OFF \
  -DPython3_EXECUTABLE="$PY" -DPYTHON_EXECUTABLE="$PY" -DLIGHTHMR_INSTALL_PYTHON_SOURCES=OFF \
  -DCMAKE_BUILD_TYPE=Release > "$BUILD/configure.log" 2>&1 || { tail -40 "$BUILD/configure.log"; exit 1; }
cmake --build "$BUILD" -j2 > "$BUILD/build.log" 2>&1 || { tail -60 "$BUILD/build.log"; exit 1; }
cmake --install "$BUILD" > "$BUILD/install.log" 2>&1 || { tail -40 "$BUILD/install.log"; exit 1; }

# In a development venv the hand-written modules come from the source tree (editable install);
# the generated package keeps only msg/ and its typesupport modules. Drop its empty __init__.py so
# it is a namespace portion that lighthmr_ros/__init__.py's extend_path picks up.
SITE=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
rm -f "$SITE/lighthmr_ros/__init__.py"
