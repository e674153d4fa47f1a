"""The launch file, the YAML defaults and the parameter table agree (launch/launch_ros are not installed
here, so the launch file is checked as Python source)."""
from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest
import yaml

pytest.importorskip("rclpy")
from lighthmr_ros.ros.params import PARAMS, Settings, descriptor  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
LAUNCH = REPO / "launch" / "detect.launch.py"
REQUIRED = {"image_topic", "camera_info_topic", "namespace", "params_file", "checkpoint", "device", "compressed",
            "autostart", "use_sim_time"}


def _call_name(node: ast.Call) -> str:
    return node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")


def test_launch_file_declares_arguments():
    tree = ast.parse(LAUNCH.read_text(), filename=str(LAUNCH))
    functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert "generate_launch_description" in functions
    modules = {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert modules <= {"launch", "launch_ros"}
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
    declared = {c.args[0].value for c in calls if _call_name(c) == "DeclareLaunchArgument"}
    assert declared == REQUIRED
    used = {c.args[0].value for c in calls if _call_name(c) == "LaunchConfiguration"}
    assert used == REQUIRED  # every argument reaches the node
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    assert "LifecycleNode" in imported and "Node" not in imported  # a lifecycle node, managed as one
    nodes = [c for c in calls if _call_name(c) in ("Node", "LifecycleNode")]
    assert len(nodes) == 1 and _call_name(nodes[0]) == "LifecycleNode"
    keywords = {k.arg: k.value for k in nodes[0].keywords}
    assert keywords["package"].value == "lighthmr_ros" and keywords["executable"].value == "detect_node"
    assert keywords["name"].value == "lighthmr_detect" and "namespace" in keywords  # LifecycleNode needs both
    remapped = {e.elts[0].value for e in keywords["remappings"].elts}
    assert remapped == {"image", "camera_info"}  # the node derives image/compressed itself
    overrides = next(e for e in keywords["parameters"].elts if isinstance(e, ast.Dict))
    keys = {k.value for k in overrides.keys}
    assert {"autostart", "use_sim_time", "device", "checkpoint", "compressed"} <= keys


def test_yaml_defaults_match_parameter_table():
    data = yaml.safe_load((REPO / "config" / "detect.yaml").read_text())
    values = data["/**"]["ros__parameters"]
    assert list(values) == [p.name for p in PARAMS]
    for spec in PARAMS:
        assert type(values[spec.name]) is type(spec.default), spec.name  # 60 vs 60.0 matters to ROS
        assert values[spec.name] == spec.default, spec.name


def test_parameter_table_and_descriptors():
    assert [f.name for f in dataclasses.fields(Settings)] == [p.name for p in PARAMS]
    for spec in PARAMS:
        desc = descriptor(spec)
        assert desc.description
        if spec.low is not None:
            rng = desc.floating_point_range or desc.integer_range
            assert rng[0].from_value <= spec.default <= rng[0].to_value, spec.name
        if spec.choices:
            assert spec.default in spec.choices


def test_detect_node_script_and_install():
    script = REPO / "scripts" / "detect_node"
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env python3") and "lighthmr_ros.ros.node import main" in text
    assert script.stat().st_mode & 0o111
    cmake = (REPO / "CMakeLists.txt").read_text()
    assert "scripts/detect_node" in cmake and "launch config" in cmake
