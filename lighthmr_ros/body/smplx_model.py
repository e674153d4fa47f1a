"""SMPL-X through the ``smplx`` library, from the user's licensed model files.

The smplx module is held as the attribute ``bm_x`` and this wrapper adds no persistent
state of its own, so its state_dict keys are exactly ``bm_x.*`` as in official Multi-HMR
checkpoints (``smpl_layer.neutral_10.bm_x.*``). It is built like
``smplx.create(dir, 'smplx', gender='neutral', use_pca=False, flat_hand_mean=True,
num_betas=10|11, num_expression_coeffs=10)``.

Pose joints (J=53): global orientation, 21 body joints, 15 left-hand, 15 right-hand joints,
jaw (Multi-HMR's order); the eyes stay at rest. Output joints (K=127, smplx's default): 55
skeleton joints, 21 vertex-selected extra joints (nose, eyes, ears, feet, finger tips) and
51 face landmarks. The global orientation goes into smplx's own linear blend skinning, which
rotates the body about the root joint, i.e. about the pelvis; with no translation the pelvis
stays at its shaped rest position.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from lighthmr_ros.body.base import BodyModel, BodyOutput, BodySpec
from lighthmr_ros.errors import BodyModelError

log = logging.getLogger(__name__)

SMPLX_FILE = "SMPLX_NEUTRAL.npz"
SMPLX_URL = "https://smpl-x.is.tue.mpg.de"
NUM_SKELETON = 55

# Names of the 53 predicted rotations, in Multi-HMR order.
_BODY = [
    "left_hip",
    "right_hip",
    "spine1",
    "left_knee",
    "right_knee",
    "spine2",
    "left_ankle",
    "right_ankle",
    "spine3",
    "left_foot",
    "right_foot",
    "neck",
    "left_collar",
    "right_collar",
    "head",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
]
_FINGERS = [f"{f}{i}" for f in ("index", "middle", "pinky", "ring", "thumb") for i in (1, 2, 3)]
POSE_JOINT_NAMES = tuple(
    ["global_orient", *_BODY, *[f"left_{f}" for f in _FINGERS], *[f"right_{f}" for f in _FINGERS], "jaw"]
)

# Parent (by name) of the 21 vertex-selected joints and of the face landmarks.
_EXTRA_PARENTS = {
    "nose": "head",
    "right_eye": "head",
    "left_eye": "head",
    "right_ear": "head",
    "left_ear": "head",
    "left_big_toe": "left_foot",
    "left_small_toe": "left_foot",
    "left_heel": "left_ankle",
    "right_big_toe": "right_foot",
    "right_small_toe": "right_foot",
    "right_heel": "right_ankle",
    **{f"{s}_{f}": f"{s}_{f}3" for s in ("left", "right") for f in ("thumb", "index", "middle", "ring", "pinky")},
}


def resolve_smplx_file(model_dir: str | Path | None) -> Path:
    """The SMPLX_NEUTRAL.npz file for a folder (``dir/`` or ``dir/smplx/``) or a file path."""
    hint = (
        f"download 'SMPL-X v1.1 NPZ' from {SMPLX_URL} (free registration) and put {SMPLX_FILE} "
        "in a folder given as --smplx-model-dir / smplx_model_dir"
    )
    if model_dir is None:
        raise BodyModelError(f"The SMPL-X body model needs its licensed model file: {hint}.")
    path = Path(model_dir).expanduser()
    candidates = [path] if path.is_file() else [path / SMPLX_FILE, path / "smplx" / SMPLX_FILE]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise BodyModelError(f"No {SMPLX_FILE} found at {path}: {hint}.")


def _joint_parents(kintree: np.ndarray, names: list[str]) -> tuple[int, ...]:
    parents = [int(p) for p in kintree[:NUM_SKELETON]]
    parents[0] = -1
    index = {n: i for i, n in enumerate(names)}
    for name in names[NUM_SKELETON:]:
        parents.append(index[_EXTRA_PARENTS.get(name, "head")])
    return tuple(parents)


class SMPLXBody(BodyModel):
    """SMPL-X (neutral) behind the BodyModel interface."""

    def __init__(self, model_dir: str | Path | None, num_betas: int = 10, num_expression: int = 10):
        super().__init__()
        import smplx
        from smplx.joint_names import JOINT_NAMES

        path = resolve_smplx_file(model_dir)
        self.model_file = path  # training rebuilds ground truth (11 betas, eyes) from the same file
        try:
            self.bm_x = smplx.SMPLX(
                str(path),
                gender="neutral",
                use_pca=False,
                flat_hand_mean=True,
                num_betas=num_betas,
                num_expression_coeffs=num_expression,
            )
        except Exception as exc:  # smplx reports a bad file with asserts and KeyErrors
            raise BodyModelError(
                f"{path} is not a usable SMPL-X model file ({type(exc).__name__}: {exc}); "
                f"download SMPLX_NEUTRAL.npz again from {SMPLX_URL}."
            ) from exc
        num_vertices = int(self.bm_x.v_template.shape[0])
        selector = self.bm_x.vertex_joint_selector.extra_joints_idxs
        if int(selector.max()) >= num_vertices:
            # A reduced mesh (tests): smplx hard-codes the real ids of the extra joints (max 9929).
            log.debug("SMPL-X mesh has %d vertices: extra-joint vertex ids taken modulo V", num_vertices)
            selector.copy_(selector % num_vertices)
        num_out = NUM_SKELETON + selector.numel() + int(self.bm_x.lmk_faces_idx.numel())
        names = list(JOINT_NAMES[:num_out])
        kintree = self.bm_x.parents.cpu().numpy()
        self.spec = BodySpec(
            name="smplx",
            num_pose_joints=len(POSE_JOINT_NAMES),
            num_shape=num_betas,
            num_expression=int(self.bm_x.num_expression_coeffs),
            num_vertices=num_vertices,
            joint_names=tuple(names),
            joint_parents=_joint_parents(kintree, names),
            pelvis_index=0,
            head_index=names.index("head"),
            pose_joint_names=POSE_JOINT_NAMES,
        )
        self.register_buffer("faces", self.bm_x.faces_tensor.detach().clone().long(), persistent=False)
        # smplx's full-pose order: global, body 21, jaw, leye, reye, left hand 15, right hand 15.
        order = [*range(0, 22), 52, -1, -1, *range(22, 37), *range(37, 52)]
        self.register_buffer("_pose_order", torch.tensor(order), persistent=False)

    def mean_shape(self) -> torch.Tensor:
        return torch.zeros(self.spec.num_shape, device=self.faces.device)

    def joints_from_vertices(self, vertices: torch.Tensor) -> torch.Tensor:
        """(B, V, 3) posed mesh -> (B, K, 3) joints in ``spec.joint_names`` order: the skeleton by the
        J_regressor applied to the posed mesh (how a mesh without SMPL-X's skeleton, e.g. an Anny mesh
        re-sampled on SMPL-X, gets joints; the model's own skeleton joints come from its kinematic chain),
        then the vertex-selected joints and face landmarks as in ``forward``."""
        from smplx.lbs import vertices2landmarks

        bm = self.bm_x
        vertices = vertices.to(bm.v_template.dtype)
        batch = vertices.shape[0]
        joints = torch.einsum("jv,bvc->bjc", bm.J_regressor.to(vertices.device), vertices)
        landmarks = vertices2landmarks(
            vertices,
            bm.faces_tensor.to(vertices.device),
            bm.lmk_faces_idx.to(vertices.device).expand(batch, -1).contiguous(),
            bm.lmk_bary_coords.to(vertices.device).expand(batch, -1, -1),
        )
        return torch.cat([bm.vertex_joint_selector(vertices, joints), landmarks], dim=1)

    def forward(self, rotmats: torch.Tensor, shape: torch.Tensor, expression: torch.Tensor | None = None) -> BodyOutput:
        from smplx.lbs import lbs, vertices2landmarks

        rotmats, shape, expression = self._check_inputs(rotmats, shape, expression)
        bm = self.bm_x
        batch = rotmats.shape[0]
        dtype = bm.v_template.dtype
        if batch == 0:
            return BodyOutput(
                rotmats.new_zeros(0, self.spec.num_vertices, 3), rotmats.new_zeros(0, self.spec.num_joints, 3)
            )
        with self._full_precision(rotmats.device):
            eye = torch.eye(3, dtype=dtype, device=rotmats.device).expand(batch, 1, 3, 3)
            padded = torch.cat([rotmats.to(dtype), eye], dim=1)  # index -1 -> identity (eyes)
            full_pose = padded[:, self._pose_order]
            components = torch.cat([shape, expression], dim=1).to(dtype)
            shapedirs = torch.cat([bm.shapedirs, bm.expr_dirs], dim=-1)
            vertices, joints = lbs(
                components,
                full_pose,
                bm.v_template,
                shapedirs,
                bm.posedirs,
                bm.J_regressor,
                bm.parents,
                bm.lbs_weights,
                pose2rot=False,
            )
            landmarks = vertices2landmarks(
                vertices,
                bm.faces_tensor,
                bm.lmk_faces_idx.expand(batch, -1).contiguous(),
                bm.lmk_bary_coords.expand(batch, -1, -1),
            )
            joints = torch.cat([bm.vertex_joint_selector(vertices, joints), landmarks], dim=1)
        return BodyOutput(vertices=vertices, joints=joints)
