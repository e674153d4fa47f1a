"""Training fixtures: small data sets in the real release formats (lighthmr_ros.training.sample_data)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lighthmr_ros.training.sample_data import write_agora, write_bedlam, write_threedpw


@pytest.fixture(scope="session")
def bedlam_root(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("bedlam")
    truth = write_bedlam(root)
    write_bedlam(root, seed=1, split="validation")
    return root, truth


@pytest.fixture(scope="session")
def threedpw_root(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("3dpw")
    return root, write_threedpw(root)


@pytest.fixture(scope="session")
def agora_root(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("agora")
    return root, write_agora(root)


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> Path:
    """Three `lighthmr synth` scenes (Anny people, 320x240, with vertices)."""
    from lighthmr_ros.synth import SynthConfig, generate_scenes

    root = tmp_path_factory.mktemp("synth")
    generate_scenes(
        root,
        3,
        seed=0,
        config=SynthConfig(width=320, height=240, max_people=3, with_vertices=True),
        progress=False,
    )
    return root
