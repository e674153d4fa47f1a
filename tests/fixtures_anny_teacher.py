"""Fixtures of the Anny teacher: the upstream Multi-HMR-Anny reference and our model loaded from it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

ANNY_REFERENCE_DIR = (
    Path(__file__).resolve().parent.parent.parent / "shared" / "reference" / "multihmr_anny_vits14_448"
)
# The reference's constructor: ViT-S/14 at 448 px with 2 decoder layers, upstream defaults otherwise.
ANNY_REFERENCE_OVERRIDES = {"image_size": 448, "hph_depth": 2}
# Upstream's constructor arguments of the reference (manifest.json -> constructor_kwargs): the ``args``
# Namespace of an official checkpoint file.
ANNY_REFERENCE_ARGS = dict(
    img_size=448,
    backbone="dinov2_vits14",
    pretrained_backbone=False,
    xat_dim=512,
    xat_depth=2,
    xat_heads=16,
    xat_dim_head=32,
    xat_mlp_dim=2048,
    xat_dropout=0.0,
    person_center="head",
    num_betas=11,
    default_pose_parameterization="root_relative_world",
    simple_depth_encoding=1,
)


@pytest.fixture(scope="session")
def anny_reference_dir() -> Path:
    if not (ANNY_REFERENCE_DIR / "state_dict_fp16.pt").exists():
        pytest.skip(f"Multi-HMR-Anny reference not found at {ANNY_REFERENCE_DIR}")
    return ANNY_REFERENCE_DIR


@pytest.fixture(scope="session")
def anny_reference_state(anny_reference_dir) -> dict:
    """The reference weights as stored (fp16)."""
    return torch.load(anny_reference_dir / "state_dict_fp16.pt", map_location="cpu", weights_only=True)


@pytest.fixture(scope="session")
def anny_reference_teacher(anny_reference_state):
    """Our Anny teacher with the reference weights (cast to fp32, strict), in eval mode."""
    from lighthmr_ros.model import create_model

    model = create_model("multihmr_anny_vits14", **ANNY_REFERENCE_OVERRIDES)
    model.load_state_dict({k: v.float() for k, v in anny_reference_state.items()}, strict=True)
    return model.eval()


@pytest.fixture(scope="session")
def anny_reference_cases(anny_reference_dir) -> dict:
    return {c: dict(np.load(anny_reference_dir / f"case_{c}.npz")) for c in "AB"}


@pytest.fixture(scope="session")
def anny_official_file(tmp_path_factory, anny_reference_state) -> Path:
    """The reference in upstream's checkpoint format: {'model_state_dict', 'args': Namespace}
    (kept in fp16 to halve the file; the loader casts every weight to fp32 as for fp32 files)."""
    import argparse

    path = tmp_path_factory.mktemp("official") / "multiHMR_448_S_anny_reference.pt"
    torch.save({"model_state_dict": anny_reference_state, "args": argparse.Namespace(**ANNY_REFERENCE_ARGS)}, path)
    return path
