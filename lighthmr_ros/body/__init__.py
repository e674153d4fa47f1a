"""Body models behind one interface: Anny (bundled, the default) and SMPL-X (the user's files).

    body = create_body_model("anny")                         # or "smplx", model_dir="~/models"
    out = body(rotmats, shape, expression)                   # (B,J,3,3), (B,S), (B,E)
    out.vertices, out.joints                                 # canonical frame: metres, y up, facing +z

See base.py for the contract and anny_model.py / smplx_model.py for each model's mapping.
"""
from __future__ import annotations

from pathlib import Path

from lighthmr_ros.body.base import BodyModel, BodyOutput, BodySpec
from lighthmr_ros.errors import BodyModelError

BODY_MODELS = ("anny", "smplx")


def create_body_model(name: str = "anny", model_dir: str | Path | None = None, **options) -> BodyModel:
    """Build a body model by name.

    Options: anny: ``bones`` ("body" | "all" | a tuple of bone names);
    smplx: ``num_betas`` (10 or 11), ``num_expression`` (10).
    """
    key = name.lower().replace("-", "")
    if key == "anny":
        from lighthmr_ros.body.anny_model import AnnyBody

        return AnnyBody(**options)
    if key == "smplx":
        from lighthmr_ros.body.smplx_model import SMPLXBody

        return SMPLXBody(model_dir, **options)
    raise BodyModelError(f"Unknown body model '{name}': choose one of {', '.join(BODY_MODELS)}.")


__all__ = ["BODY_MODELS", "BodyModel", "BodyOutput", "BodySpec", "create_body_model"]
