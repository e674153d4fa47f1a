"""Every dependency key of package.xml resolves with rosdep on the ROS 2 distributions we support.

Checked against rosdistro data stored in tests/data/rosdep (verbatim rosdep/python.yaml entries and the
Jazzy package list, the source commit named in each file's header), so the check runs offline. A key
that is not there makes `rosdep install --from-paths src -y` fail for every user.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from catkin_pkg.package import parse_package

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "rosdep"
UBUNTU = ("jammy", "noble")  # Humble, Jazzy


def _keys() -> dict[str, str]:
    pkg = parse_package(str(ROOT / "package.xml"))
    groups = {"buildtool": pkg.buildtool_depends, "build": pkg.build_depends, "exec": pkg.exec_depends,
              "test": pkg.test_depends}
    return {d.name: kind for kind, deps in groups.items() for d in deps}


def _system_rules() -> dict:
    return yaml.safe_load((DATA / "python.yaml").read_text())


def _ros_packages() -> dict:
    return yaml.safe_load((DATA / "jazzy_packages.yaml").read_text())


def _ubuntu_rule(rule: dict, codename: str):
    ubuntu = rule.get("ubuntu")
    return ubuntu.get(codename, ubuntu.get("*")) if isinstance(ubuntu, dict) else ubuntu


def test_every_key_is_defined_in_rosdistro():
    rules, ros = _system_rules(), _ros_packages()
    undefined = sorted(k for k in _keys() if k not in rules and k not in ros)
    assert not undefined, f"keys rosdistro does not define (rosdep install fails on them): {undefined}"


@pytest.mark.parametrize("codename", UBUNTU)
def test_system_keys_resolve_to_apt_packages_not_pip(codename):
    """pip through rosdep writes into the system Python (refused by PEP 668 on 24.04): apt only."""
    rules = _system_rules()
    for key in _keys():
        if key in rules:
            resolved = _ubuntu_rule(rules[key], codename)
            assert isinstance(resolved, list) and resolved, f"{key} has no apt package on Ubuntu {codename}"


def test_torch_is_not_a_rosdep_key():
    """rosdistro's python3-torch is the distribution's CPU build; CUDA/Jetson users need pip's or NVIDIA's."""
    assert _ubuntu_rule(_system_rules()["python3-torch"], "noble") == ["python3-torch"]
    assert not {"python3-torch", "python3-torchvision"} & set(_keys())
    assert "torch>=" in (ROOT / "requirements.txt").read_text()


def test_stored_data_names_its_source():
    for path in DATA.glob("*.yaml"):
        head = path.read_text().splitlines()[:3]
        assert any("github:ros/rosdistro" in line and "commit" in line for line in head), path
