"""tf2_msgs for tests in pip-only venvs: built once from tests/interfaces (never part of the package)."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

INTERFACES = Path(__file__).resolve().parent / "interfaces"


def _importable() -> bool:
    probe = subprocess.run([sys.executable, "-c", "from tf2_msgs.msg import TFMessage"], capture_output=True)
    return probe.returncode == 0


@pytest.fixture(scope="session")
def tf_message_type():
    """tf2_msgs/TFMessage: the real one on a ROS machine, else the stand-in built into this venv (~20 s)."""
    if not _importable():
        if shutil.which("cmake") is None:
            pytest.skip("tf2_msgs is not installed and cmake is missing to build its test stand-in")
        venv = Path(sys.prefix)
        build = subprocess.run([str(INTERFACES / "build_interfaces.sh"), str(venv)], capture_output=True,
                               text=True)
        if build.returncode != 0:
            pytest.fail("building the tf2_msgs test interface failed:\n"
                        f"{build.stdout[-3000:]}{build.stderr[-3000:]}")
    from tf2_msgs.msg import TFMessage

    return TFMessage
