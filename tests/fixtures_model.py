"""Fixtures of the model area: a synthetic SMPL-X folder, small students, the reference teacher."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lighthmr_ros.body.synthetic_smplx import write_synthetic_smplx


@pytest.fixture(scope="session")
def model_smplx_dir(tmp_path_factory):
    """A folder holding a synthetic SMPLX_NEUTRAL.npz in the real format."""
    d = tmp_path_factory.mktemp("smplx_model")
    write_synthetic_smplx(d / "SMPLX_NEUTRAL.npz")
    return d


@pytest.fixture(scope="session")
def student_smplx(model_smplx_dir):
    """The student (random init, seeded) with the synthetic SMPL-X head, eval mode."""
    from lighthmr_ros.model import create_model

    torch.manual_seed(0)
    return create_model("lighthmr_tinyvit5m", body_model="smplx", smplx_model_dir=model_smplx_dir).eval()


def load_reference_teacher(reference_dir):
    """Our teacher built from the reference files with the upstream weights (fp16 -> fp32, strict)."""
    from lighthmr_ros.model import create_model

    model = create_model(
        "multihmr_vits14", smplx_model_dir=reference_dir, mean_params=reference_dir / "smpl_mean_params.npz"
    )
    state = torch.load(reference_dir / "state_dict_fp16.pt", map_location="cpu", weights_only=True)
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()}, strict=True)
    return model.eval()


@pytest.fixture(scope="session")
def reference_teacher(reference_dir):
    return load_reference_teacher(reference_dir)


@pytest.fixture(scope="session")
def reference_cases(reference_dir):
    return {c: dict(np.load(reference_dir / f"case_{c}.npz")) for c in "AB"}


@pytest.fixture(scope="session")
def student_small(model_smplx_dir):
    """A 256-px student (16x16 tokens) for fast Predictor tests."""
    from lighthmr_ros.model import create_model

    torch.manual_seed(1)
    return create_model(
        "lighthmr_tinyvit5m", body_model="smplx", smplx_model_dir=model_smplx_dir, image_size=256
    ).eval()
