"""Shared pytest setup. Fixtures of each area live in tests/fixtures_<area>.py and load here."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
pytest_plugins = sorted(f"fixtures_{p.stem[len('fixtures_'):]}" for p in TESTS.glob("fixtures_*.py"))

# Keep CPU tests predictable on 2-core machines and never reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

REFERENCE_DIR = TESTS.parent.parent / "shared" / "reference" / "multihmr_vits14_448"


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than a few seconds (still runs in CI)")
    config.addinivalue_line("markers", "ros: needs rclpy and the generated messages")
    config.addinivalue_line("markers", "browser: needs Chromium and the built front end")


_next_domain = [10 + (os.getpid() % 50) * 3]


@pytest.fixture
def ros_domain_id(monkeypatch) -> int:
    """A ROS_DOMAIN_ID of its own for each test (set in this process's environment)."""
    _next_domain[0] = _next_domain[0] % 200 + 1
    domain = _next_domain[0]
    monkeypatch.setenv("ROS_DOMAIN_ID", str(domain))
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    return domain


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """Upstream Multi-HMR reference (shared/reference beside the repository)."""
    if not (REFERENCE_DIR / "state_dict_fp16.pt").exists():
        pytest.skip(f"upstream reference not found at {REFERENCE_DIR}")
    return REFERENCE_DIR
