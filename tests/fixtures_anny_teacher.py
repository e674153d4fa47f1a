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
