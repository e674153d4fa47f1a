"""The lint gate: ruff over the tree and mypy over the public modules, as configured in pyproject.toml.

Run as tests so that ``make test`` and CI enforce them; the tools come with the dev extra (pinned in
scripts/constraints.txt). To fix locally: ``.venv/bin/ruff check --fix . && .venv/bin/ruff format .``.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_check_passes():
    pytest.importorskip("ruff", reason="ruff comes with the dev extra: run `make setup`")
    result = _run("ruff", "check", "--no-fix", "--output-format", "concise", ".")
    assert result.returncode == 0, f"ruff found problems:\n{result.stdout[-6000:]}{result.stderr[-2000:]}"


def test_mypy_passes_on_public_modules():
    pytest.importorskip("mypy", reason="mypy comes with the dev extra: run `make setup`")
    result = _run("mypy")  # files and strictness: [tool.mypy] in pyproject.toml
    assert result.returncode == 0, f"mypy found problems:\n{result.stdout[-6000:]}{result.stderr[-2000:]}"
