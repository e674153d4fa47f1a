"""`lighthmr serve` fails with one actionable line, before loading anything, when it cannot run."""
from __future__ import annotations

import socket
import subprocess
import sys

import pytest
from fixtures_web import REPO


def _serve(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lighthmr_ros.cli", "serve", *args],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )


def test_serve_port_in_use():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        run = _serve("--port", str(port))
    assert run.returncode == 2
    lines = [x for x in run.stderr.strip().splitlines() if ": note: " not in x]  # the demo-model note
    assert len(lines) == 1 and "Cannot listen on 127.0.0.1" in lines[0] and "--port" in lines[0], run.stderr


@pytest.mark.parametrize("option", [("--fov", "500"), ("--det-threshold", "-1"), ("--port", "70000"),
                                    ("--fov-estimate-frames", "0")])
def test_serve_bad_option(option):
    run = _serve(*option)
    assert run.returncode == 2
    lines = [x for x in run.stderr.strip().splitlines() if ": note: " not in x]  # the demo-model note
    assert len(lines) == 1 and option[0] in lines[0], run.stderr


@pytest.mark.slow
def test_serve_missing_checkpoint(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    missing = tmp_path / "missing.pt"
    run = _serve("--port", str(port), "--checkpoint", str(missing), "--device", "cpu")
    assert run.returncode == 2, run.stderr
    error_lines = [line for line in run.stderr.splitlines() if "error" in line]
    assert len(error_lines) == 1 and "missing.pt" in error_lines[0], run.stderr
    assert "Traceback" not in run.stderr


def test_serve_help_lists_options():
    run = _serve("--help")
    assert run.returncode == 0
    for option in ("--host", "--port", "--checkpoint", "--device", "--cors-origin", "--max-upload-mb"):
        assert option in run.stdout


def test_serve_defaults_to_localhost():
    import argparse

    from lighthmr_ros.commands import serve

    parser = argparse.ArgumentParser()
    serve.configure(parser)
    args = parser.parse_args([])
    assert (args.host, args.port, args.cors_origin) == ("127.0.0.1", 8000, [])
