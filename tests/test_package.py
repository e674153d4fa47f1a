"""The ROS package manifest and build files: valid, and honest about what the code imports."""
from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

from catkin_pkg.package import parse_package

ROOT = Path(__file__).resolve().parents[1]

# import name -> where it comes from on a ROS machine: a rosdep key of package.xml, or "pip:<name>" for a
# line of requirements.txt (libraries rosdep cannot install well; see package.xml's comment).
IMPORT_SOURCES = {
    "numpy": "python3-numpy", "cv2": "python3-opencv", "yaml": "python3-yaml", "PIL": "python3-pil",
    "scipy": "python3-scipy", "tqdm": "python3-tqdm", "pytest": "python3-pytest",
    "catkin_pkg": "python3-catkin-pkg", "cv_bridge": "cv_bridge",
    "torch": "pip:torch", "torchvision": "pip:torchvision", "timm": "pip:timm", "smplx": "pip:smplx",
    "roma": "pip:roma", "anny": "pip:anny", "warp": "pip:anny", "rosbags": "pip:rosbags",
    "trimesh": "pip:trimesh", "fastapi": "pip:fastapi", "starlette": "pip:fastapi", "pydantic": "pip:fastapi",
    "uvicorn": "pip:uvicorn", "multipart": "pip:python-multipart", "python_multipart": "pip:python-multipart",
    "httpx": "pip:httpx", "pandas": "pip:pandas", "onnx": "pip:onnx", "onnxruntime": "pip:onnxruntime",
    "tensorboard": "pip:tensorboard", "skimage": "pip:scikit-image", "matplotlib": "pip:matplotlib",
    "mcap_ros2": "pip:mcap-ros2-support", "mcap": "pip:mcap-ros2-support",
    # optional offscreen renderer of the synthetic data (never imported by the node)
    "pyrender": "pip:pyrender", "OpenGL": "pip:pyrender",
    # ROS packages, by their own names
    "rclpy": "rclpy", "sensor_msgs": "sensor_msgs", "std_msgs": "std_msgs", "geometry_msgs": "geometry_msgs",
    "visualization_msgs": "visualization_msgs", "diagnostic_msgs": "diagnostic_msgs",
    "lifecycle_msgs": "lifecycle_msgs", "builtin_interfaces": "builtin_interfaces",
    "rcl_interfaces": "rcl_interfaces", "launch": "launch", "launch_ros": "launch_ros",
    "ament_index_python": "ament_index_python", "std_srvs": "std_srvs",
    "tf2_ros": "tf2_ros_py", "tf2_msgs": "tf2_msgs", "sensor_msgs_py": "sensor_msgs_py",
    "transforms3d": "python3-transforms3d",
}
# Imported only by tests or optional tools, never by an installed module: not dependencies of the package.
OPTIONAL_PIP = {"pyrender", "std_srvs"}


def requirements() -> dict[str, str]:
    """requirements.txt as {distribution name: the whole line}."""
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    reqs = [line.split("#")[0].strip() for line in lines]
    return {re.split(r"[<>=!~ \[;]", r)[0].lower(): r for r in reqs if r}


def _imported_top_level_modules(paths) -> set[str]:
    names: set[str] = set()
    for path in paths:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def _package():
    return parse_package(str(ROOT / "package.xml"))


def test_manifest_is_valid_format3_ament_cmake():
    pkg = _package()
    pkg.validate()
    assert pkg.name == "lighthmr_ros"
    assert pkg.package_format == 3
    assert pkg.get_build_type() == "ament_cmake"
    assert pkg.licenses and str(pkg.licenses[0]) == "Apache-2.0"
    assert "rosidl_interface_packages" in [g.name for g in pkg.member_of_groups]


def test_manifest_and_requirements_name_every_third_party_module_the_code_imports():
    pkg = _package()
    declared = {d.name for d in pkg.build_depends + pkg.buildtool_depends + pkg.exec_depends + pkg.test_depends}
    code = [p for d in ("lighthmr_ros", "training", "launch", "scripts") for p in (ROOT / d).rglob("*.py")
            if "node_modules" not in p.parts]
    code += [ROOT / "scripts" / "detect_node"]
    own = {"lighthmr_ros", "training", "tests", "fixtures_body", "conftest"}
    third_party = _imported_top_level_modules(code) - set(sys.stdlib_module_names) - own
    unknown = sorted(m for m in third_party if m not in IMPORT_SOURCES)
    assert not unknown, f"say where these imports come from in IMPORT_SOURCES, package.xml/requirements.txt: {unknown}"
    sources = {IMPORT_SOURCES[m] for m in third_party}
    missing = sorted(s for s in sources if not s.startswith("pip:") and s not in declared)
    assert not missing, f"package.xml lacks dependencies for imported modules: {missing}"
    pip_needed = {s[4:] for s in sources if s.startswith("pip:")} - OPTIONAL_PIP
    missing = sorted(pip_needed - set(requirements()))
    assert not missing, f"requirements.txt lacks: {missing}"


def test_requirements_keep_numpy_1_and_match_setup_py():
    reqs = requirements()
    assert reqs["numpy"] == "numpy<2"  # apt's cv_bridge is built against NumPy 1.x
    setup = (ROOT / "setup.py").read_text()
    for name, line in reqs.items():
        if name != "numpy":
            assert f'"{line}"' in setup, f"requirements.txt {line!r} differs from setup.py"


def test_cmake_generates_every_message_and_installs_the_python_parts():
    cmake = (ROOT / "CMakeLists.txt").read_text()
    for msg in sorted((ROOT / "msg").glob("*.msg")):
        assert f'"msg/{msg.name}"' in cmake
    assert "rosidl_generate_interfaces" in cmake
    assert "DESTINATION lib/${PROJECT_NAME}" in cmake and "scripts/detect_node" in cmake
    assert "install(DIRECTORY lighthmr_ros/" in cmake and "training" not in cmake
    assert "launch config DESTINATION share/${PROJECT_NAME}" in cmake


def test_setup_py_exposes_console_scripts_and_training_subpackage():
    text = (ROOT / "setup.py").read_text()
    assert "lighthmr=lighthmr_ros.cli:main" in text
    assert "lighthmr-detect=lighthmr_ros.ros.node:main" in text
    assert '"lighthmr_ros.training": ["configs/*.yaml", "README.md"]' in text
    assert "package_dir" not in text, "lighthmr_ros.training is a real sub-package: no remap"
    assert not (ROOT / "lighthmr_ros" / "training").is_symlink()


def test_library_imports_without_rclpy(tmp_path):
    """Model, training and web code must work on a machine without ROS."""
    import subprocess

    blocker = tmp_path / "rclpy"
    blocker.mkdir()
    (blocker / "__init__.py").write_text("raise ImportError('rclpy blocked for this test')\n")
    code = "import lighthmr_ros, lighthmr_ros.cli, lighthmr_ros.errors, lighthmr_ros.human; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={"PYTHONPATH": f"{tmp_path}:{ROOT}", "PATH": "/usr/bin:/bin"}, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
