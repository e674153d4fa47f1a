"""The Anny teacher: NAVER's Multi-HMR-Anny architecture (the network of ``multiHMR_672_L_anny``).

Written from the facts of shared/reference/multihmr_anny_vits14_448 (upstream multi_hmr_anny/ at
651fb41; its code is not reused). State_dict keys equal upstream's, so official files load as they are:

- ``encoder.backbone.*``: DINOv2 ViT (timm, parameter names of facebookresearch/dinov2);
  ``encoder.mlp_det.*`` scores every patch (plain sigmoid, no clamp); ``encoder.mlp_fov_unique.*``
  regresses the field of view from the class token, ``fov = fov_max * sigmoid(.)``.
- ``dec_to_token.*`` + ``dec_pos_emb`` (a fixed 2D sine-cosine table, column in the first half),
  ``decoder.transformer.layers.*``: the 512-wide HPH (self-, cross-attention, MLP per layer), one query
  per detected cell, the context being every cell of the same image.
- ``mlp_offset`` (sub-cell keypoint), ``mlp_dist`` (``dist = f / exp(y)``), ``mlp_shape`` (11
  phenotypes, sigmoid), ``mlp_pose`` (163 x 6D around ``init_body_pose``), the ``useful_rotmat`` bone
  mask, and ``body_model.anchors.*`` (Anny's full rig, lighthmr_ros.body.anny_model.AnnyFullBody).

Non-learned tensors (``dec_pos_emb``, ``init_body_pose``, ``encoder.fov_max``, the anchors, ``eye``,
``useful_rotmat``) are state too: official files carry them, and their stored (fp16-rounded) values
are what reproduce the file's outputs, so loading takes them from the file.

The forward takes the caller's K, or (``K=None`` or ``estimate_K``) builds K from the network's own
field of view: ``fx = fy = (S / 2) / tan(fov / 2)``, principal point at the square's centre. It
returns the project's ``Detections`` (plus the K used and the field of view), so the Predictor, the
node, the bag tool and the web demo run it as they run the student.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import roma
import timm
import torch
import torch.nn.functional as F
from torch import nn

from lighthmr_ros.errors import ConfigError
from lighthmr_ros.model.camera import project, unproject
from lighthmr_ros.model.config import ModelConfig
from lighthmr_ros.model.encoders import DINOV2_TIMM
from lighthmr_ros.model.heads import nms, pick_peaks, regression_mlp
from lighthmr_ros.model.hmr import Detections
from lighthmr_ros.model.hph import CrossAttnLayers

NUM_BONES = 163
NUM_PHENOTYPES = 6  # gender, age, muscle, weight, height, proportions drive the body
# Bones the teacher never rotates (upstream's useful_rotmat = 0): toes, breasts, and every face bone
# under the head (tongue, lips, eyes, ...) except the jaw. Everything else keeps its rotation.
_FIXED_PREFIXES = ("toe", "breast")


@dataclass
class AnnyDetections(Detections):
    """Detections plus the camera the Anny teacher used, per image of the batch."""

    K: torch.Tensor | None = None  # (B, 3, 3) intrinsics used, of the S x S network image
    K_regressed: torch.Tensor | None = None  # (B, 3, 3) the network's own estimate
    fov: torch.Tensor | None = None  # (B,) regressed field of view (radians, across the square)
    K_estimated: torch.Tensor | None = None  # (B,) bool: True where K came from the network
    phenotypes_all: torch.Tensor | None = None  # (P, 11) every phenotype output (the body uses 6)

    def to(self, *args, **kwargs) -> AnnyDetections:
        return AnnyDetections(
            **{
                f.name: None if getattr(self, f.name) is None else getattr(self, f.name).to(*args, **kwargs)
                for f in fields(self)
            }
        )


def sincos_table(grid: int, dim: int) -> torch.Tensor:
    """(grid*grid, dim) fixed position table, row-major cells: [sin, cos](col w), then [sin, cos](row w),
    w_i = 10000^(-i / (dim/4)); computed in float64 as upstream does."""
    if dim % 4:
        raise ConfigError(f"the decoder width must be a multiple of 4, got {dim}")
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    idx = torch.arange(grid, dtype=torch.float64)
    rows, cols = idx.repeat_interleave(grid), idx.repeat(grid)

    def one(pos: torch.Tensor) -> torch.Tensor:
        angle = pos[:, None] * omega[None]
        return torch.cat([angle.sin(), angle.cos()], dim=1)

    return torch.cat([one(cols), one(rows)], dim=1).float()


def initial_pose() -> torch.Tensor:
    """(1, 163*6) start of the 6D pose: root pi/2 about x (Anny's z-up to the camera's y-down), the rest
    identity; each 6-vector is the first two columns written row-major (R00, R01, R10, R11, R20, R21)."""
    rot = torch.eye(3).repeat(NUM_BONES, 1, 1)
    rot[0] = roma.rotvec_to_rotmat(torch.tensor([math.pi / 2, 0.0, 0.0]))
    return rot[:, :, :2].reshape(1, -1)


def useful_bones(names: tuple[str, ...], parents: tuple[int, ...]) -> torch.Tensor:
    """(1, J) upstream's bone mask: 0 for toes, breasts and the bones under the head but the jaw, else 1."""
    head = names.index("head")
    mask = []
    for i, name in enumerate(names):
        p, below_head = parents[i], False
        while p >= 0:
            below_head |= p == head
            p = parents[p]
        fixed = name.startswith(_FIXED_PREFIXES) or (below_head and name != "jaw")
        mask.append(0.0 if fixed else 1.0)
    return torch.tensor(mask)[None]


class AnnyTeacherEncoder(nn.Module):
    """DINOv2 ViT + per-patch person score + field-of-view regression (upstream ``Encoder``)."""

    def __init__(self, name: str, interpolate_offset: float = 0.1):
        super().__init__()
        try:
            self.backbone = timm.create_model(
                DINOV2_TIMM.get(name, name), pretrained=False, num_classes=0, img_size=518
            )
        except RuntimeError as exc:
            raise ConfigError(f"unknown DINOv2 encoder {name!r}; use one of {sorted(DINOV2_TIMM)}") from exc
        self.backbone.mask_token = nn.Parameter(
            torch.zeros(1, self.backbone.embed_dim)
        )  # upstream key, unused
        self.embed_dim = dim = self.backbone.embed_dim
        self.patch_size = self.backbone.patch_embed.patch_size[0]
        self.interpolate_offset = interpolate_offset
        self.mlp_det = regression_mlp([dim, dim, 1])
        self.mlp_fov_unique = regression_mlp([dim, dim, 1])
        self.register_buffer("fov_max", torch.tensor([math.pi]))

    def _pos_embed(self, gh: int, gw: int) -> torch.Tensor:
        """DINOv2's resize of its 37x37 table: bicubic with scale factor (g + 0.1) / 37, no antialias."""
        pos = self.backbone.pos_embed
        m = int(math.sqrt(pos.shape[1] - 1))
        if (gh, gw) == (m, m):
            return pos
        patch = pos[:, 1:].float().reshape(1, m, m, -1).permute(0, 3, 1, 2)
        scale = ((gh + self.interpolate_offset) / m, (gw + self.interpolate_offset) / m)
        patch = F.interpolate(patch, scale_factor=scale, mode="bicubic", antialias=False)
        return torch.cat([pos[:, :1].float(), patch.permute(0, 2, 3, 1).reshape(1, gh * gw, -1)], dim=1).to(
            pos.dtype
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, S, S) -> patch tokens (B, h, w, C) and class token (B, C), both after the final norm."""
        vit = self.backbone
        gh, gw = x.shape[-2] // self.patch_size, x.shape[-1] // self.patch_size
        t = vit.patch_embed.proj(x).flatten(2).transpose(1, 2)
        t = torch.cat([vit.cls_token.expand(t.shape[0], -1, -1).to(t.dtype), t], dim=1)
        t = t + self._pos_embed(gh, gw).to(t.dtype)
        for blk in vit.blocks:
            t = blk(t)
        t = vit.norm(t)
        return t[:, 1:].reshape(t.shape[0], gh, gw, -1), t[:, 0]

    def camera(self, cls: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Regressed field of view (B,) in radians and its K (B, 3, 3) for an S x S image."""
        fov = (self.fov_max * torch.sigmoid(self.mlp_fov_unique(cls).float()))[:, 0]
        focal = (size / 2) / torch.tan(fov / 2)
        K = torch.eye(3, device=cls.device).repeat(cls.shape[0], 1, 1)
        K[:, 0, 0] = K[:, 1, 1] = focal
        K[:, 0, 2] = K[:, 1, 2] = size / 2
        return fov, K


class AnnyDecoder(nn.Module):
    """Upstream's ``HPH`` for Anny: only the attention layers (``decoder.transformer.layers.*``)."""

    def __init__(self, dim: int, depth: int, heads: int, dim_head: int, mlp_dim: int):
        super().__init__()
        self.dim = dim
        self.transformer = CrossAttnLayers(dim, depth, heads, dim_head, mlp_dim, context_dim=dim)

    def forward(self, queries: torch.Tensor, context: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        return self.transformer(queries, context, key_mask)


class MultiHMRAnny(nn.Module):
    """Multi-HMR with the Anny body model (see the module docstring). Use ``build_multihmr_anny``."""

    def __init__(self, config: ModelConfig, body: nn.Module):
        super().__init__()
        if config.family != "multihmr_anny":
            raise ConfigError(f"MultiHMRAnny builds multihmr_anny configs, not {config.family!r}")
        spec = body.spec
        if spec.num_pose_joints != NUM_BONES or spec.num_shape != NUM_PHENOTYPES:
            raise ConfigError(
                f"the Anny teacher needs Anny's full rig ({NUM_BONES} bones, {NUM_PHENOTYPES} phenotypes), "
                f"got {spec.name} with {spec.num_pose_joints} and {spec.num_shape}"
            )
        if config.num_betas < NUM_PHENOTYPES:
            raise ConfigError(
                f"num_betas must be at least {NUM_PHENOTYPES} (the phenotypes the body uses), "
                f"got {config.num_betas}"
            )
        self.config = config
        self.encoder = AnnyTeacherEncoder(config.encoder)
        if self.encoder.patch_size != config.token_stride:
            raise ConfigError(
                f"{config.encoder} has patch {self.encoder.patch_size}, config says {config.token_stride}"
            )
        dim = config.hph_dim
        self.register_buffer("eye", torch.eye(3)[None])  # upstream state, unused
        self.register_buffer("useful_rotmat", useful_bones(spec.joint_names, spec.joint_parents))
        self.register_buffer("dec_pos_emb", sincos_table(config.grid, dim))
        self.register_buffer("init_body_pose", initial_pose())
        self.dec_to_token = nn.Linear(self.encoder.embed_dim, dim)
        self.decoder = AnnyDecoder(
            dim, config.hph_depth, config.hph_heads, config.hph_dim_head, config.hph_mlp_dim
        )
        self.mlp_offset = regression_mlp([dim, dim, 2])
        self.mlp_pose = regression_mlp([dim + 6 * NUM_BONES, dim, 6 * NUM_BONES])
        self.mlp_shape = regression_mlp([dim, dim, config.num_betas])
        self.mlp_dist = regression_mlp([dim, dim, 1])
        self.body_model = body

    # ----------------------------------------------------------------- properties
    @property
    def body(self) -> nn.Module:
        return self.body_model

    @property
    def body_prefixes(self) -> tuple[str, ...]:
        """Body tensors come from the anny package, except the anchors, which official files carry."""
        return ("body_model.",)

    @property
    def stride(self) -> int:
        return self.encoder.patch_size

    # ----------------------------------------------------------------- pieces
    def encode(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Tokens (B, h, w, C), score logits (B, h, w), scores, regressed fov (B,) and K (B, 3, 3)."""
        size = images.shape[-1]
        if images.shape[-2] != size or size % self.stride:
            raise ConfigError(
                f"the Anny teacher needs square inputs whose side is a multiple of {self.stride}, "
                f"got {tuple(images.shape[-2:])}"
            )
        feat, cls = self.encoder(images)
        logits = self.encoder.mlp_det(feat)[..., 0]
        fov, K = self.encoder.camera(cls, size)
        return {
            "feat": feat,
            "score_logits": logits,
            "scores": torch.sigmoid(logits.float()),
            "fov": fov,
            "K": K,
        }

    def camera_used(
        self, K: torch.Tensor | None, K_regressed: torch.Tensor, estimate_K: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(K used (B, 3, 3), estimated (B,) bool): the caller's K, the network's where asked or absent."""
        B = K_regressed.shape[0]
        if K is None:
            return K_regressed, torch.ones(B, dtype=torch.bool, device=K_regressed.device)
        K = K.to(K_regressed.device, torch.float32).expand(B, 3, 3)
        if estimate_K is None:
            return K, torch.zeros(B, dtype=torch.bool, device=K.device)
        est = torch.as_tensor(estimate_K, dtype=torch.bool, device=K.device).reshape(B)
        return torch.where(est[:, None, None], K_regressed, K), est

    def decode(
        self, feat: torch.Tensor, K: torch.Tensor, b: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Per-person outputs for the cells (b, rows, cols), stacked in that order."""
        B, gh, gw, _ = feat.shape
        if (gh, gw) != (self.config.grid, self.config.grid):
            raise ConfigError(
                f"this teacher's position table is for {self.config.image_size} px inputs "
                f"({self.config.grid}x{self.config.grid} cells), got {gh * self.stride} px"
            )
        dec_emb = self.dec_to_token(feat) + self.dec_pos_emb.view(1, gh, gw, -1).to(feat.dtype)
        P = b.shape[0]
        # One padded row of queries per image holding people; slot = rank of the person in its image.
        counts = torch.bincount(b, minlength=B)
        starts = torch.cumsum(counts, 0) - counts
        slot = torch.arange(P, device=b.device) - starts[b]
        has = counts > 0
        row_of_image = torch.cumsum(has.long(), 0) - 1
        M = int(counts.max())
        queries = dec_emb.new_zeros(int(has.sum()), M, dec_emb.shape[-1])
        queries[row_of_image[b], slot] = dec_emb[b, rows, cols]
        mask = torch.zeros(queries.shape[:2], dtype=torch.bool, device=b.device)
        mask[row_of_image[b], slot] = True
        y = self.decoder(queries, dec_emb[has].flatten(1, 2), mask)[row_of_image[b], slot]  # (P, D)

        offset = self.mlp_offset(y).float()
        loc = (torch.stack([cols, rows], dim=-1).float() + 0.5 + offset) * self.stride
        K_det = K[b].float()
        dist_raw = self.mlp_dist(y).float()
        dist = K_det[:, 0, 0, None] / torch.exp(dist_raw).clamp(min=1e-5)
        transl = unproject(loc[:, None], K_det, dist[:, None])[:, 0]
        phenotypes = torch.sigmoid(self.mlp_shape(y).float())
        init = self.init_body_pose.float()
        rot6d = self.mlp_pose(torch.cat([y, init.expand(P, -1).to(y.dtype)], dim=1)).float() + init
        rotmat = roma.special_gramschmidt(rot6d.reshape(-1, 3, 2)).reshape(P, NUM_BONES, 3, 3)
        m = self.useful_rotmat.float().reshape(1, -1, 1, 1)
        rotmat = m * rotmat + (1 - m) * torch.eye(3, device=rotmat.device)
        with torch.autocast(device_type=feat.device.type, enabled=False):
            out = self.body(rotmat, phenotypes[:, :NUM_PHENOTYPES])
            centre = out.joints[:, self.body.spec.head_index : self.body.spec.head_index + 1]
            verts = out.vertices - centre + transl[:, None]
            joints = out.joints - centre + transl[:, None]
            j2d = project(joints, K_det)
        return {
            "y": y,
            "offset": offset,
            "loc": loc,
            "dist_raw": dist_raw,
            "dist": dist[:, 0],
            "transl": transl,
            "phenotypes": phenotypes,
            "rot6d": rot6d,
            "rotmat": rotmat,
            "vertices": verts,
            "joints": joints,
            "joints_2d": j2d,
        }

    # ----------------------------------------------------------------- forward
    def forward(
        self,
        images: torch.Tensor,
        K: torch.Tensor | None = None,
        det_threshold: float = 0.5,
        nms_kernel: int | None = None,
        max_humans: int = 20,
        with_vertices: bool = True,
        estimate_K: torch.Tensor | None = None,
    ) -> AnnyDetections:
        """Detect and reconstruct everyone in (B, 3, S, S) normalised images.

        ``K``: (B, 3, 3) intrinsics of the S x S images, or None to use the network's field of view
        for every image; ``estimate_K`` (B,) bool picks the network's K for some images only.
        Persons come in raster order of their cells (upstream's internal order; upstream's own
        list is this order sorted by depth).
        """
        z = self.encode(images)
        K_used, estimated = self.camera_used(K, z["K"], estimate_K)
        kernel = self.config.nms_kernel if nms_kernel is None else nms_kernel
        score_map = z["scores"]
        b, n = pick_peaks(nms(score_map, kernel), det_threshold, max_humans)
        gw = score_map.shape[-1]
        rows, cols = n // gw, n % gw
        cam = {"K": K_used, "K_regressed": z["K"], "fov": z["fov"], "K_estimated": estimated}
        if b.numel() == 0:
            return self._empty(score_map, cam)
        d = self.decode(z["feat"], K_used, b, rows, cols)
        return AnnyDetections(
            batch_index=b,
            score=score_map.flatten(1)[b, n],
            loc=d["loc"],
            dist=d["dist"],
            transl=d["transl"],
            transl_pelvis=d["joints"][:, self.body.spec.pelvis_index],
            rotmat=d["rotmat"],
            rotvec=roma.rotmat_to_rotvec(d["rotmat"]),
            shape=d["phenotypes"][:, :NUM_PHENOTYPES],
            expression=d["phenotypes"].new_zeros(len(b), 0),
            vertices=d["vertices"] if with_vertices else None,
            joints=d["joints"],
            joints_2d=d["joints_2d"],
            cells=torch.stack([rows, cols], dim=-1),
            offset=d["offset"],
            pred_cam=torch.cat([d["dist_raw"], d["dist_raw"].new_zeros(len(b), 2)], dim=1),
            score_map=score_map,
            phenotypes_all=d["phenotypes"],
            **cam,
        )

    def _empty(self, score_map: torch.Tensor, cam: dict) -> AnnyDetections:
        spec = self.body.spec
        dev = score_map.device
        z = lambda *s: torch.zeros(*s, device=dev)  # noqa: E731
        return AnnyDetections(
            batch_index=torch.zeros(0, dtype=torch.long, device=dev),
            score=z(0),
            loc=z(0, 2),
            dist=z(0),
            transl=z(0, 3),
            transl_pelvis=z(0, 3),
            rotmat=z(0, NUM_BONES, 3, 3),
            rotvec=z(0, NUM_BONES, 3),
            shape=z(0, NUM_PHENOTYPES),
            expression=z(0, 0),
            vertices=z(0, spec.num_vertices, 3),
            joints=z(0, spec.num_joints, 3),
            joints_2d=z(0, spec.num_joints, 2),
            cells=torch.zeros(0, 2, dtype=torch.long, device=dev),
            offset=z(0, 2),
            pred_cam=z(0, 3),
            score_map=score_map,
            phenotypes_all=z(0, self.config.num_betas),
            **cam,
        )


def build_multihmr_anny(config: ModelConfig, body: nn.Module | None = None) -> MultiHMRAnny:
    """The Anny teacher with random weights (``body``: an AnnyFullBody to share, else a new one)."""
    if body is None:
        from lighthmr_ros.body.anny_model import AnnyFullBody

        body = AnnyFullBody()
    return MultiHMRAnny(config, body)


def count_anny_teacher(model_or_config: MultiHMRAnny | ModelConfig) -> dict[str, int]:
    """Learned parameters per part: encoder (ViT), detection heads (score, FOV), decoder (token
    projection, HPH, offset, pose, shape and distance MLPs)."""
    if isinstance(model_or_config, ModelConfig):
        cfg = model_or_config
        enc = AnnyTeacherEncoder(cfg.encoder)
        dim = cfg.hph_dim
        dec = nn.ModuleList(
            [
                nn.Linear(enc.embed_dim, dim),
                AnnyDecoder(dim, cfg.hph_depth, cfg.hph_heads, cfg.hph_dim_head, cfg.hph_mlp_dim),
                regression_mlp([dim, dim, 2]),
                regression_mlp([dim + 6 * NUM_BONES, dim, 6 * NUM_BONES]),
                regression_mlp([dim, dim, cfg.num_betas]),
                regression_mlp([dim, dim, 1]),
            ]
        )
        parts = {
            "encoder": enc.backbone,
            "detection_heads": nn.ModuleList([enc.mlp_det, enc.mlp_fov_unique]),
            "hph": dec,
        }
    else:
        m = model_or_config
        parts = {
            "encoder": m.encoder.backbone,
            "detection_heads": nn.ModuleList([m.encoder.mlp_det, m.encoder.mlp_fov_unique]),
            "hph": nn.ModuleList(
                [m.dec_to_token, m.decoder, m.mlp_offset, m.mlp_pose, m.mlp_shape, m.mlp_dist]
            ),
        }
    counts = {k: sum(p.numel() for p in mod.parameters()) for k, mod in parts.items()}
    counts["total"] = sum(counts.values())
    return counts
