"""Anny (NAVER Labs, PyPI ``anny``): the bundled default body model.

Anny ships its assets (CC0 MakeHuman data) in the wheel, so it works with nothing to download.
Its first construction on a machine builds a cache (about two minutes, under ~/.cache/anny or
$ANNY_CACHE_DIR); after that a construction takes about a second, and this module keeps one
loaded instance per process and hands out copies (about 10 ms).

Mapping to the BodyModel contract:
- Pose: rotations of ``bones`` (default ``"body"``: the 36 bones of the body skeleton listed in
  BODY_BONES, the root first; ``"all"``: all 104 bones). Other bones (toes, fingers, eyes) stay
  at rest. Each rotation is Anny's ``local-ref`` parameterisation (the bone's rotation relative
  to its parent, in world-aligned axes at the rest pose) expressed in the canonical axes, as in
  SMPL-X. The identity pose is Anny's rest pose (arms down at about 45 degrees).
- Shape (S=6): Anny's phenotypes in this order: gender (0 male, 1 female), age (0 baby,
  1/3 child, 2/3 young adult, 1 old), muscle, weight, height, proportions; each in [0, 1]
  (clamped by Anny), mean shape 0.5 each (Anny's default person).
- Expression: none (E=0).
- Output joints (K=104): the posed heads of all bones, named and parented as Anny's rig;
  pelvis = ``root``, head (the detection centre) = ``head`` (the skull base).
- Faces: Anny's triangles (27,420 for 13,718 vertices).
- Frame: Anny is z-up, facing -y; outputs are rotated to metres, y up, facing +z (x = the
  body's left, like SMPL-X). The root sits at the origin; the global orientation
  (rotmats[:, 0]) rotates the body about it.
Skinning uses Anny's dense linear blend skinning (plain torch: any device, autograd). Anny's
phenotype-dependent rest skeleton uses an eigen-decomposition (roma), which ONNX cannot express:
export networks up to the body parameters.
"""

from __future__ import annotations

import copy
import functools
import logging
import threading
import warnings

import torch

from lighthmr_ros.body.base import BodyModel, BodyOutput, BodySpec
from lighthmr_ros.errors import BodyModelError

log = logging.getLogger(__name__)

PHENOTYPES = ("gender", "age", "muscle", "weight", "height", "proportions")

BODY_BONES = (
    "root",
    "pelvis.L",
    "upperleg01.L",
    "upperleg02.L",
    "lowerleg01.L",
    "lowerleg02.L",
    "foot.L",
    "pelvis.R",
    "upperleg01.R",
    "upperleg02.R",
    "lowerleg01.R",
    "lowerleg02.R",
    "foot.R",
    "spine05",
    "spine04",
    "spine03",
    "spine02",
    "spine01",
    "clavicle.L",
    "shoulder01.L",
    "upperarm01.L",
    "upperarm02.L",
    "lowerarm01.L",
    "lowerarm02.L",
    "wrist.L",
    "clavicle.R",
    "shoulder01.R",
    "upperarm01.R",
    "upperarm02.R",
    "lowerarm01.R",
    "lowerarm02.R",
    "wrist.R",
    "neck01",
    "neck02",
    "neck03",
    "head",
)

# Anny's frame (x left, y back, z up) -> canonical (x left, y up, z forward).
ANNY_TO_CANONICAL = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])

_lock = threading.Lock()


@functools.lru_cache(maxsize=2)
def _load_core():
    """One Anny instance per process (float32, CPU, dense LBS); callers copy it."""
    try:
        import anny
    except ImportError as exc:
        raise BodyModelError(
            "The Anny body model needs the 'anny' package: pip install 'anny>=0.6'."
        ) from exc
    log.info("loading the Anny body model (the first run on a machine builds a cache, about 2 minutes)")
    try:
        # Built outside inference mode even when the first caller is in it: tensors made under
        # inference_mode can never take part in autograd, and this instance is shared by training too.
        with torch.inference_mode(False):
            core = anny.Anny(skinning_method="lbs").to(torch.float32)
    except Exception as exc:
        raise BodyModelError(
            f"The Anny body model could not be built ({type(exc).__name__}: {exc}); "
            "delete ~/.cache/anny (or $ANNY_CACHE_DIR) and retry."
        ) from exc
    # Anny registers its phenotype anchors as persistent buffers; they are constants, keep
    # them out of the state_dict of any network that holds the body model.
    core.anchors._non_persistent_buffers_set.update(core.anchors._buffers)
    core.requires_grad_(False)
    if tuple(core.phenotype_labels) != PHENOTYPES:
        raise BodyModelError(f"Unexpected Anny phenotypes {core.phenotype_labels}; install anny 0.6.x.")
    return core


def _unpoison_roma_cache(device: torch.device) -> None:
    """roma memoises a constant (its Horn map) per device with functools.lru_cache; when the first
    call happened under inference_mode (the Predictor), the cached tensor breaks every later autograd
    forward (training in the same process). Drop such an entry so it is rebuilt as a normal tensor."""
    import roma.mappings

    cached = getattr(roma.mappings, "_cached_horn_map", None)
    if cached is not None and hasattr(cached, "cache_clear") and cached(device).is_inference():
        cached.cache_clear()


class AnnyBody(BodyModel):
    """Anny behind the BodyModel interface (see the module docstring for the mapping)."""

    def __init__(self, bones: str | tuple[str, ...] = "body"):
        super().__init__()
        with _lock, torch.inference_mode(False):
            self.anny = copy.deepcopy(_load_core())
        labels = list(self.anny.bone_labels)
        if bones == "body":
            bones = BODY_BONES
        elif bones == "all":
            bones = tuple(labels)
        unknown = [b for b in bones if b not in labels]
        if unknown or not bones or bones[0] != labels[0]:
            raise BodyModelError(
                f"Anny bones must start with '{labels[0]}' and be among its rig's bones; unknown: {unknown}."
            )
        self.bones = tuple(bones)
        parents = tuple(int(p) if i else -1 for i, p in enumerate(self.anny.bone_parents))
        self.spec = BodySpec(
            name="anny",
            num_pose_joints=len(self.bones),
            num_shape=len(PHENOTYPES),
            num_expression=0,
            num_vertices=int(self.anny.template_vertices.shape[0]),
            joint_names=tuple(labels),
            joint_parents=parents,
            pelvis_index=0,
            head_index=labels.index("head"),
            pose_joint_names=self.bones,
        )
        self.register_buffer(
            "faces", self.anny.faces.detach().clone().long().reshape(-1, 3), persistent=False
        )
        self.register_buffer(
            "_bone_index", torch.tensor([labels.index(b) for b in self.bones]), persistent=False
        )
        self.register_buffer("_to_canonical", ANNY_TO_CANONICAL.clone(), persistent=False)

    @property
    def phenotype_names(self) -> tuple[str, ...]:
        return PHENOTYPES

    def mean_shape(self) -> torch.Tensor:
        return torch.full((self.spec.num_shape,), 0.5, device=self.faces.device)

    def forward(
        self, rotmats: torch.Tensor, shape: torch.Tensor, expression: torch.Tensor | None = None
    ) -> BodyOutput:
        rotmats, shape, _ = self._check_inputs(rotmats, shape, expression)
        batch = rotmats.shape[0]
        dtype = self.anny.template_vertices.dtype
        num_bones = len(self.spec.joint_names)
        if batch == 0:
            return BodyOutput(
                rotmats.new_zeros(0, self.spec.num_vertices, 3), rotmats.new_zeros(0, num_bones, 3)
            )
        if torch.is_grad_enabled() and not torch.is_inference_mode_enabled():
            _unpoison_roma_cache(rotmats.device)
        with self._full_precision(rotmats.device):
            c = self._to_canonical.to(dtype)
            rot = rotmats.to(dtype)
            local = c.T @ rot[:, 1:] @ c  # canonical -> Anny axes
            deltas = torch.eye(4, dtype=dtype, device=rot.device).repeat(batch, num_bones, 1, 1)
            deltas[:, self._bone_index[1:], :3, :3] = local
            out = self.anny(deltas, shape.to(dtype))
            vertices = out["vertices"] @ c.T
            joints = out["bone_poses"][..., :3, 3] @ c.T
            pelvis = joints[:, self.spec.pelvis_index : self.spec.pelvis_index + 1]
            root = rot[:, 0].transpose(1, 2)
            vertices = (vertices - pelvis) @ root + pelvis
            joints = (joints - pelvis) @ root + pelvis
        return BodyOutput(vertices=vertices, joints=joints)


# --------------------------------------------------------------------------- the teacher's full rig
FULLBODY_BONES = 163
FULLBODY_VERTICES = 19158


@functools.lru_cache(maxsize=1)
def _load_fullbody_core():
    """Upstream Multi-HMR-Anny's body: the legacy full MakeHuman rig (163 bones, eyes and tongue kept),
    unattached vertices kept (19,158), all 11 phenotypes, dense LBS. One per process; callers copy it."""
    try:
        import anny
    except ImportError as exc:
        raise BodyModelError(
            "The Anny body model needs the 'anny' package: pip install 'anny>=0.6'."
        ) from exc
    log.info("loading Anny's full-body rig (the first run on a machine builds a cache, about a minute)")
    try:
        with torch.inference_mode(False), warnings.catch_warnings():
            # Deprecated in anny 0.6 but kept: it is the exact call the official checkpoint was trained with.
            warnings.simplefilter("ignore", DeprecationWarning)
            core = anny.create_fullbody_model(remove_unattached_vertices=False, all_phenotypes=True)
            core = core.to(torch.float32)
            core.set_skinning_method("lbs")
    except Exception as exc:
        raise BodyModelError(
            f"Anny's full-body rig could not be built ({type(exc).__name__}: {exc}); "
            "delete ~/.cache/anny (or $ANNY_CACHE_DIR) and retry."
        ) from exc
    core.requires_grad_(False)
    bones, verts = len(core.bone_labels), int(core.template_vertices.shape[0])
    if (bones, verts) != (FULLBODY_BONES, FULLBODY_VERTICES) or tuple(
        core.phenotype_labels[:6]
    ) != PHENOTYPES:
        raise BodyModelError(
            f"anny {getattr(anny, '__version__', '?')} builds a full body of {bones} bones and "
            f"{verts} vertices, the Multi-HMR-Anny teacher needs {FULLBODY_BONES} and "
            f"{FULLBODY_VERTICES}; install anny 0.6.x."
        )
    return core


def quads_to_triangles(faces: torch.Tensor) -> torch.Tensor:
    """(F, 4) quads -> (2F, 3) triangles (a, b, c), (a, c, d); triangles pass through."""
    if faces.shape[-1] == 3:
        return faces.long()
    return torch.cat([faces[:, [0, 1, 2]], faces[:, [0, 2, 3]]]).long()


class AnnyFullBody(BodyModel):
    """The Multi-HMR-Anny teacher's body: Anny's full rig, upstream's settings, upstream's frame.

    - Pose: (B, 163, 3, 3) rotations in Anny's ``local-bone`` parameterisation (each bone relative to
      its parent, in its own rest axes; the root's rest orientation is the identity). Unlike AnnyBody
      nothing is converted: the output stays in Anny's frame (z up) turned by the root rotation, and
      the teacher's root rotation (starting at pi/2 about x) is what takes it to the camera frame.
    - Shape (S=6): gender, age, muscle, weight, height, proportions in [0, 1]; cupsize, firmness and
      the three race weights stay at Anny's default 0.5, as upstream leaves them.
    - Output joints (K=163): bone heads; pelvis = ``root`` (0), head = ``head`` (103).
    - Faces: Anny's 13,710 quads split into 27,420 triangles.
    The 8 phenotype interpolation anchors are this module's only state (``anchors.*``, as in the
    official state_dict, whose fp16-rounded values must be used to reproduce its outputs).
    """

    def __init__(self):
        super().__init__()
        with _lock, torch.inference_mode(False):
            core = copy.deepcopy(_load_fullbody_core())
        # Anny reads self.anchors; keep that one BufferDict registered here only, so its buffers
        # are saved as ``anchors.*`` (upstream's ``body_model.anchors.*``) and move with .to().
        anchors = core._modules.pop("anchors")
        object.__setattr__(core, "anchors", anchors)
        self.anny = core
        self.anchors = anchors
        labels = list(core.bone_labels)
        parents = tuple(int(p) if i else -1 for i, p in enumerate(core.bone_parents))
        self.spec = BodySpec(
            name="anny_fullbody",
            num_pose_joints=len(labels),
            num_shape=len(PHENOTYPES),
            num_expression=0,
            num_vertices=int(core.template_vertices.shape[0]),
            joint_names=tuple(labels),
            joint_parents=parents,
            pelvis_index=0,
            head_index=labels.index("head"),
            pose_joint_names=tuple(labels),
        )
        self.register_buffer("faces", quads_to_triangles(core.faces.detach().clone()), persistent=False)

    @property
    def phenotype_names(self) -> tuple[str, ...]:
        return PHENOTYPES

    def mean_shape(self) -> torch.Tensor:
        return torch.full((self.spec.num_shape,), 0.5, device=self.faces.device)

    def blendshape_coefficients(self, shape: torch.Tensor) -> torch.Tensor:
        """(B, C) Anny's phenotype blendshape coefficients of ``shape`` (B, 6).

        Upstream's forward returned them as ``blendshape_coeffs``; anny 0.6 computes them inside its
        forward without returning them, so they are computed here from the same inputs by the same
        anny step (C = 318 with anny 0.6.2's compact blendshapes). Nothing in inference needs them.
        """
        phenotypes = {name: shape[:, i].float() for i, name in enumerate(PHENOTYPES)}
        _, values, local, facial = self.anny.get_tensor_inputs(None, phenotypes, None, None)
        return self.anny._get_phenotype_blendshape_coefficients(values, local, facial)

    def forward(
        self, rotmats: torch.Tensor, shape: torch.Tensor, expression: torch.Tensor | None = None
    ) -> BodyOutput:
        rotmats, shape, _ = self._check_inputs(rotmats, shape, expression)
        batch = rotmats.shape[0]
        if batch == 0:
            return BodyOutput(
                rotmats.new_zeros(0, self.spec.num_vertices, 3), rotmats.new_zeros(0, self.spec.num_joints, 3)
            )
        if torch.is_grad_enabled() and not torch.is_inference_mode_enabled():
            _unpoison_roma_cache(rotmats.device)
        with self._full_precision(rotmats.device):
            dtype = self.anny.template_vertices.dtype
            pose = torch.zeros(batch, self.spec.num_pose_joints, 4, 4, dtype=dtype, device=rotmats.device)
            pose[..., :3, :3] = rotmats.to(dtype)
            pose[..., 3, 3] = 1.0
            phenotypes = {name: shape[:, i].to(dtype) for i, name in enumerate(PHENOTYPES)}
            out = self.anny(pose_parameters=pose, phenotype_kwargs=phenotypes)
        return BodyOutput(vertices=out["vertices"], joints=out["bone_poses"][..., :3, 3])
