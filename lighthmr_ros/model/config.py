"""Named model configurations (one dataclass; a registry of names, as timm does).

Everything a checkpoint needs to rebuild its network lives here, so checkpoints store
``asdict(config)`` and nothing else about the architecture.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from lighthmr_ros.errors import ConfigError


@dataclass
class ModelConfig:
    name: str
    family: str  # "lighthmr" (student), "multihmr" (SMPL-X teacher) or "multihmr_anny" (Anny teacher)
    encoder: str  # timm TinyViT name or a dinov2_vit*14 name
    image_size: int  # network input side S (square)
    token_stride: int  # pixels per token cell
    token_dim: int | None = None  # student: project encoder features to this width (None: keep)
    hph_dim: int = 1024
    hph_depth: int = 2
    hph_heads: int = 8
    hph_dim_head: int = 32
    hph_mlp_dim: int = 1024
    camera_num_bands: int = 16
    camera_max_resolution: int = 64
    rays_row_first: bool = False  # Multi-HMR's (row, col) swap in its camera rays
    clip_dist: float | None = 50.0  # distance clamp in metres (None: no clamp)
    fov_norm_deg: float = 60.0  # distances are predicted for this field of view, then rescaled by focal
    body_model: str = "anny"
    num_betas: int = 10  # SMPL-X shape size (teacher: 10)
    num_expression: int = 10  # SMPL-X expression size
    person_center: str = "head"
    nms_kernel: int = 3  # default max-pool window of the peak search, in cells (upstream: 3)
    nms_radius: float = (
        0.0  # also drop detections whose refined keypoint is this close (cells) to a better one
    )
    smpl_layers: tuple[str, ...] = field(default_factory=tuple)  # teacher: upstream smpl_layer names

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["smpl_layers"] = list(self.smpl_layers)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(
                f"unknown model config fields {unknown}: the checkpoint is from a newer lighthmr_ros"
            )
        d = dict(d)
        if "smpl_layers" in d:
            d["smpl_layers"] = tuple(d["smpl_layers"])
        return cls(**d)

    @property
    def grid(self) -> int:
        return self.image_size // self.token_stride


def _teacher(name: str, encoder: str, image_size: int = 896) -> ModelConfig:
    return ModelConfig(
        name=name,
        family="multihmr",
        encoder=encoder,
        image_size=image_size,
        token_stride=14,
        rays_row_first=True,
        body_model="smplx",
        smpl_layers=("neutral_10", "neutral_11"),
    )


def _anny_teacher(name: str, encoder: str, image_size: int) -> ModelConfig:
    """Multi-HMR-Anny (upstream multi_hmr_anny): its constructor defaults; official files bring their own
    sizes (lighthmr_ros.model.checkpoint reads them from the weights and ``args``)."""
    return ModelConfig(
        name=name,
        family="multihmr_anny",
        encoder=encoder,
        image_size=image_size,
        token_stride=14,
        hph_dim=512,
        hph_depth=8,
        hph_heads=16,
        hph_dim_head=32,
        hph_mlp_dim=2048,
        clip_dist=None,  # dist = focal / exp(y): no clamp upstream
        body_model="anny_fullbody",
        num_betas=11,  # phenotype outputs; the first 6 drive the body
        num_expression=0,
        person_center="head",
    )


_REGISTRY: dict[str, ModelConfig] = {
    # Student: TinyViT-5M, stride-16 tokens (28x28 at 448 px), HPH 384 wide, 16 heads of 24.
    "lighthmr_tinyvit5m": ModelConfig(
        name="lighthmr_tinyvit5m",
        family="lighthmr",
        encoder="tiny_vit_5m_224",
        image_size=448,
        token_stride=16,
        token_dim=384,
        hph_dim=384,
        hph_depth=4,
        hph_heads=16,
        hph_dim_head=24,
        hph_mlp_dim=1024,
    ),
    # Smaller decoder: HPH 256 wide, 16 heads of 16.
    "lighthmr_tinyvit5m_256": ModelConfig(
        name="lighthmr_tinyvit5m_256",
        family="lighthmr",
        encoder="tiny_vit_5m_224",
        image_size=448,
        token_stride=16,
        token_dim=256,
        hph_dim=256,
        hph_depth=4,
        hph_heads=16,
        hph_dim_head=16,
        hph_mlp_dim=1024,
    ),
    "multihmr_vits14": _teacher("multihmr_vits14", "dinov2_vits14", 448),
    "multihmr_vitb14": _teacher("multihmr_vitb14", "dinov2_vitb14", 896),
    "multihmr_vitl14": _teacher("multihmr_vitl14", "dinov2_vitl14", 896),
    # The Anny teacher (the official multiHMR_672_L_anny is ViT-L at 672 px).
    "multihmr_anny_vits14": _anny_teacher("multihmr_anny_vits14", "dinov2_vits14", 448),
    "multihmr_anny_vitb14": _anny_teacher("multihmr_anny_vitb14", "dinov2_vitb14", 672),
    "multihmr_anny_vitl14": _anny_teacher("multihmr_anny_vitl14", "dinov2_vitl14", 672),
}


def list_models() -> list[str]:
    return list(_REGISTRY)


def get_config(name: str, **overrides) -> ModelConfig:
    """A copy of the named config with ``overrides`` applied (unknown names -> ConfigError)."""
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model {name!r}; choose one of {', '.join(_REGISTRY)}")
    cfg = dataclasses.replace(_REGISTRY[name])
    fields = {f.name for f in dataclasses.fields(ModelConfig)}
    bad = sorted(set(overrides) - fields)
    if bad:
        raise ConfigError(f"unknown model option(s) {bad}; valid options are {sorted(fields)}")
    cfg = dataclasses.replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
    if cfg.image_size % cfg.token_stride:
        raise ConfigError(
            f"image size {cfg.image_size} must be a multiple of the token stride {cfg.token_stride}"
        )
    if cfg.family == "lighthmr" and cfg.image_size % 32:
        raise ConfigError(f"TinyViT image size must be a multiple of 32, got {cfg.image_size}")
    return cfg
