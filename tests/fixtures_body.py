"""Body-model fixtures: a synthetic SMPL-X folder (real file format) and a shared Anny instance."""
from __future__ import annotations

import pytest

from lighthmr_ros.body.synthetic_smplx import write_synthetic_smplx


@pytest.fixture(scope="session")
def smplx_model_dir(tmp_path_factory):
    """A folder holding a small synthetic SMPLX_NEUTRAL.npz that ``smplx`` loads."""
    folder = tmp_path_factory.mktemp("smplx_models")
    write_synthetic_smplx(folder / "SMPLX_NEUTRAL.npz", seed=0)
    return folder


@pytest.fixture(scope="session")
def anny_body():
    """One Anny body model for the session (the first build on a machine fills ~/.cache/anny)."""
    from lighthmr_ros.body import create_body_model

    return create_body_model("anny")
