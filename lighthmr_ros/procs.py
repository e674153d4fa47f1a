"""Child processes started by the demo, the bench and the tests (the node, the web server)."""
from __future__ import annotations

import signal
import subprocess


def stop_process(proc: subprocess.Popen, timeout: float = 20.0, sig: int = signal.SIGTERM) -> int:
    """Ask ``proc`` to stop with ``sig`` (SIGINT lets a ROS node shut down cleanly), kill it if it has
    not exited after ``timeout`` seconds, and reap it; returns its exit status."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()
