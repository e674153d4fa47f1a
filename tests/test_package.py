"""The ROS package manifest and build files: valid, and honest about what the code imports."""
from __future__ import annotations

import ast
import sys
from pathlib import Path

from catkin_pkg.package import parse_package

ROOT = Path(__file__).resolve().parents[1]

# import name -> rosdep key that provides it (keys ending in -pip resolve through pip)
ROSDEP_KEYS = {
    "numpy": "python3-numpy", "cv2": "python3-opencv", "yaml": "python3-yaml", "PIL": "python3-pil",
    "scipy": "python3-scipy", "tqdm": "python3-tqdm", "torch": "python3-torch",
    "torchvision": "python3-torchvision", "timm": "python3-timm-pip", "smplx": "python3-smplx-pip",
    "roma": "python3-roma-pip", "anny": "python3-anny-pip", "rosbags": "python3-rosbags-pip",
    "trimesh": "python3-trimesh-pip", "fastapi": "python3-fastapi", "uvicorn": "python3-uvicorn",
    "multipart": "python3-multipart-pip", "python_multipart": "python3-multipart-pip",
    "pandas": "python3-pandas", "onnx": "python3-onnx-pip", "onnxruntime": "python3-onnxruntime-pip",
    "tensorboard": "python3-tensorboard-pip", "starlette": "python3-fastapi", "pydantic": "python3-fastapi",
    "skimage": "python3-skimage", "matplotlib": "python3-matplotlib", "mcap_ros2": "python3-mcap-ros2-support-pip",
    "mcap": "python3-mcap-ros2-support-pip", "httpx": "python3-httpx", "pytest": "python3-pytest",
    "catkin_pkg": "python3-catkin-pkg", "warp": "python3-anny-pip", "pyrender": "python3-pyrender-pip",
    "OpenGL": "python3-opengl", "cv_bridge": "cv_bridge",
    # ROS packages, by their own names
    "rclpy": "rclpy", "sensor_msgs": "sensor_msgs", "std_msgs": "std_msgs", "geometry_msgs": "geometry_msgs",
    "visualization_msgs": "visualization_msgs", "diagnostic_msgs": "diagnostic_msgs",
    "lifecycle_msgs": "lifecycle_msgs", "builtin_interfaces": "builtin_interfaces",
    "rcl_interfaces": "rcl_interfaces", "launch": "launch", "launch_ros": "launch_ros", "ament_index_python": "ament_index_python", "std_srvs": "std_srvs",
}


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


def test_manifest_names_every_third_party_module_the_code_imports():
    pkg = _package()
    declared = {d.name for d in pkg.build_depends + pkg.buildtool_depends + pkg.exec_depends + pkg.test_depends}
    code = [p for d in ("lighthmr_ros", "launch", "scripts") for p in (ROOT / d).rglob("*.py")
            if "node_modules" not in p.parts]
    code += [ROOT / "scripts" / "detect_node"]
    own = {"lighthmr_ros", "tests", "fixtures_body", "conftest"}
    third_party = _imported_top_level_modules(code) - set(sys.stdlib_module_names) - own
    unknown = sorted(m for m in third_party if m not in ROSDEP_KEYS)
    assert not unknown, f"add a rosdep key for these imports to ROSDEP_KEYS and package.xml: {unknown}"
    missing = sorted({ROSDEP_KEYS[m] for m in third_party} - declared)
    assert not missing, f"package.xml lacks dependencies for imported modules: {missing}"


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
