"""pip metadata for lighthmr_ros (the ROS side builds with CMakeLists.txt / colcon)."""
from setuptools import find_packages, setup

core = [
    "numpy>=1.24",
    "torch>=2.1",
    "torchvision>=0.16",
    "timm>=1.0.9",
    "roma>=1.4",
    "transforms3d>=0.4.1,<0.5",  # quaternions of the TF frames (lighthmr_ros.ros.tf_frames)
    "smplx>=0.1.28",
    "anny>=0.6",
    "opencv-python-headless>=4.8",
    "pillow>=10",
    "pyyaml>=6",
    "tqdm>=4.60",
    "trimesh>=4",
    "scipy>=1.10",
    # sample photos with people (demo, synthetic backgrounds) ship inside these two
    "scikit-image>=0.21",
    "matplotlib>=3.7",
]
extras = {
    "ros": ["rosbags>=0.10", "mcap-ros2-support>=0.5"],
    "train": ["pandas>=2", "tensorboard>=2.14"],
    "web": ["fastapi>=0.110", "uvicorn>=0.27", "python-multipart>=0.0.9"],
    "export": ["onnx>=1.15", "onnxruntime>=1.17"],
    "dev": ["pytest>=8", "pytest-timeout>=2.2", "httpx>=0.27", "catkin-pkg>=1.0", "ruff>=0.17", "mypy>=2.4"],
}
extras["all"] = sorted({req for reqs in extras.values() for req in reqs})

setup(
    name="lighthmr_ros",
    version="0.1.0",
    description="Real-time multi-person 3D human mesh recovery for ROS 2 (lightweight Multi-HMR).",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["lighthmr_ros", "lighthmr_ros.*"]),
    package_data={
        "lighthmr_ros": ["py.typed", "assets/*", "web/static/**/*"],
        "lighthmr_ros.training": ["configs/*.yaml", "README.md"],
    },
    include_package_data=True,
    install_requires=core,
    extras_require=extras,
    entry_points={
        "console_scripts": [
            "lighthmr=lighthmr_ros.cli:main",
            "lighthmr-detect=lighthmr_ros.ros.node:main",
        ]
    },
)
