"""HMRModel: the single-shot multi-person model shared by the student and the teacher.

image -> encoder tokens -> per-token score and 2D offset -> NMS peaks -> one HPH query per
person (cross-attention over all tokens + camera-ray embedding) -> body parameters + distance ->
body model -> vertices and joints in the camera frame of the S x S network image.

Persons are stacked over the whole batch (``batch_index``); nothing loops over persons in Python.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import roma
import torch
from torch import nn

from lighthmr_ros.model.camera import CameraEmbedding, focal_from_fov, project, token_centres, unproject
from lighthmr_ros.model.config import ModelConfig
from lighthmr_ros.model.heads import nms, pick_peaks, regression_mlp, score_from_logits, suppress_close_centres
from lighthmr_ros.model.hph import HPH

# Per-person outputs of forward_train (one row per detected person), in the order training reads them.
PERSON_KEYS = ("pred_cam", "dist", "rotmat", "shape", "expression", "vertices", "joints", "joints_2d", "transl", "loc")


@dataclass
class Detections:
    """All persons P of a batch, stacked; pixels are of the S x S network image."""

    batch_index: torch.Tensor  # (P,)
    score: torch.Tensor  # (P,)
    loc: torch.Tensor  # (P, 2) primary keypoint pixel (x, y)
    dist: torch.Tensor  # (P,) depth of the primary keypoint (metres)
    transl: torch.Tensor  # (P, 3) primary keypoint in the camera frame
    transl_pelvis: torch.Tensor  # (P, 3)
    rotmat: torch.Tensor  # (P, J, 3, 3)
    rotvec: torch.Tensor  # (P, J, 3)
    shape: torch.Tensor  # (P, S)
    expression: torch.Tensor  # (P, E)
    vertices: torch.Tensor | None  # (P, V, 3)
    joints: torch.Tensor  # (P, K, 3)
    joints_2d: torch.Tensor  # (P, K, 2)
    cells: torch.Tensor  # (P, 2) token (row, col)
    offset: torch.Tensor  # (P, 2) sub-cell offset in cells
    pred_cam: torch.Tensor  # (P, 3) raw distance output (log, focal-normalised) and 2 unused values
    score_map: torch.Tensor  # (B, h, w) detection scores before NMS

    def __len__(self) -> int:
        return int(self.batch_index.shape[0])

    def to(self, *args, **kwargs) -> Detections:
        return Detections(
            **{
                f.name: None if getattr(self, f.name) is None else getattr(self, f.name).to(*args, **kwargs)
                for f in fields(self)
            }
        )


class HMRModel(nn.Module):
    """Encoder + detection heads + HPH + body model.

    Args:
        config: the architecture.
        backbone: encoder module with ``embed_dim`` and ``stride``, forward -> (tokens, (h, w)).
        body: the BodyModel used in forward.
        hph_init: (init_pose (J, 6), init_shape (S,), init_cam (3,)) decoder start values.
        smpl_layers: teacher only: name -> BodyModel, stored as ``smpl_layer`` (upstream key layout);
            the first one is used in forward.
    """

    def __init__(
        self,
        config: ModelConfig,
        backbone: nn.Module,
        body: nn.Module,
        hph_init: tuple,
        smpl_layers: dict | None = None,
    ):
        super().__init__()
        self.config = config
        self.backbone = backbone
        self.camera = CameraEmbedding(config.camera_num_bands, config.camera_max_resolution)
        dim = backbone.embed_dim
        self.mlp_classif = regression_mlp([dim, dim, 1])
        self.mlp_offset = regression_mlp([dim, dim, 2])
        spec = body.spec
        init_pose, init_shape, init_cam = hph_init
        self.x_attention_head = HPH(
            init_pose=init_pose,
            init_shape=init_shape,
            init_cam=init_cam,
            num_expression=spec.num_expression,
            context_dim=dim + self.camera.channels,
            grid=config.grid,
            dim=config.hph_dim,
            depth=config.hph_depth,
            heads=config.hph_heads,
            dim_head=config.hph_dim_head,
            mlp_dim=config.hph_mlp_dim,
            kid_betas=config.family == "multihmr",
        )
        if smpl_layers:
            self.smpl_layer = nn.ModuleDict(smpl_layers)
            self._body_key = next(iter(smpl_layers))
        else:
            self.body_model = body
            self._body_key = None

    # ----------------------------------------------------------------- properties
    @property
    def body(self) -> nn.Module:
        return self.smpl_layer[self._body_key] if self._body_key else self.body_model

    @property
    def body_path(self) -> str:
        """Module path of the body model inside this model (forward hooks, FLOP counts per part)."""
        return f"smpl_layer.{self._body_key}" if self._body_key else "body_model"

    @property
    def body_prefixes(self) -> tuple[str, ...]:
        """state_dict prefixes of body-model tensors (rebuilt from the body files, never trained)."""
        return ("smpl_layer.",) if self._body_key else ("body_model.",)

    @property
    def stride(self) -> int:
        return self.backbone.stride

    # ----------------------------------------------------------------- pieces
    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        return self.backbone(images)

    def camera_rays(self, K: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """(B, N, 3) ray of every token centre (Multi-HMR's row/col swap when configured)."""
        pts = token_centres(grid[0], grid[1], self.stride, K.device, row_first=self.config.rays_row_first)
        return unproject(pts[None].expand(K.shape[0], -1, -1), K.float())

    def distance(self, pred_cam: torch.Tensor, focal: torch.Tensor, image_size: int) -> torch.Tensor:
        """Metric depth from the raw output: exp(y f / f_n), f_n = focal of ``fov_norm_deg`` at S px."""
        fn = focal_from_fov(self.config.fov_norm_deg, image_size)
        dist = torch.exp(pred_cam[:, 0].float() * (focal.float() / fn))
        if self.config.clip_dist is not None:
            dist = dist.clamp(0.0, self.config.clip_dist)
        return dist

    def place(self, rotmat, shape, expression, loc, dist, K_det):
        """Body model + camera placement: the primary keypoint goes to K^-1 [loc, 1] * dist."""
        with torch.autocast(device_type=loc.device.type, enabled=False):
            out = self.body(rotmat.float(), shape.float(), expression.float())
            verts, joints = out.vertices, out.joints
            centre = joints[:, self.body.spec.head_index : self.body.spec.head_index + 1]
            transl = unproject(loc[:, None].float(), K_det.float(), dist[:, None, None].float())[:, 0]
            verts = verts - centre + transl[:, None]
            joints = joints - centre + transl[:, None]
            j2d = project(joints, K_det.float())
        return transl, verts, joints, j2d

    def _decode(self, images, K, tokens, grid, b, n, offset):
        gh, gw = grid
        rows, cols = n // gw, n % gw
        rays = self.camera_rays(K, grid)
        context = torch.cat([tokens, self.camera(rays).to(tokens.dtype)], dim=-1)
        out = self.x_attention_head(context[b, n], context, b, rows, cols)
        loc = (torch.stack([cols, rows], dim=-1).float() + 0.5 + offset.float()) * self.stride
        K_det = K[b].float()
        dist = self.distance(out["cam"], K_det[:, 0, 0], images.shape[-1])
        transl, verts, joints, j2d = self.place(out["rotmat"], out["shape"], out["expression"], loc, dist, K_det)
        return {
            "rows": rows,
            "cols": cols,
            "loc": loc,
            "dist": dist,
            "pred_cam": out["cam"].float(),
            "rotmat": out["rotmat"],
            "shape": out["shape"].float(),
            "expression": out["expression"].float(),
            "transl": transl,
            "vertices": verts,
            "joints": joints,
            "joints_2d": j2d,
            "token_out": out["token_out"],
            "rays": rays,
        }

    # ----------------------------------------------------------------- forwards
    def find_people(
        self,
        tokens: torch.Tensor,
        score_map: torch.Tensor,
        det_threshold: float = 0.5,
        nms_kernel: int | None = None,
        max_humans: int = 20,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(batch index, token index, sub-cell offset) of each person: peaks over the threshold after
        max-pool NMS (``nms_kernel`` cells; None: the config's), then, when the config sets
        ``nms_radius``, without duplicates whose refined keypoints nearly coincide; at most
        ``max_humans`` per image, the best ones."""
        kernel = self.config.nms_kernel if nms_kernel is None else nms_kernel
        peaks = nms(score_map, kernel)
        radius = self.config.nms_radius * self.stride
        if radius <= 0:
            b, n = pick_peaks(peaks, det_threshold, max_humans)
            return b, n, self.mlp_offset(tokens[b, n]).float()
        b, n = pick_peaks(peaks, det_threshold, 0)
        offset = self.mlp_offset(tokens[b, n]).float()
        gw = score_map.shape[-1]
        loc = torch.stack([n % gw, n // gw], dim=-1).float() + offset
        score = score_map.flatten(1)[b, n]
        keep = suppress_close_centres(b, loc * self.stride, score, radius)
        # the best max_humans of the kept peaks per image, in raster order, with the offsets already computed
        slot = torch.full_like(score_map.flatten(1), -1, dtype=torch.long).index_put(
            (b[keep], n[keep]), torch.arange(len(b), device=b.device)[keep]
        )
        peaks = torch.zeros_like(score_map).flatten(1).index_put((b[keep], n[keep]), score[keep]).view_as(score_map)
        b, n = pick_peaks(peaks, det_threshold, max_humans)
        return b, n, offset[slot[b, n]]

    def forward(
        self,
        images: torch.Tensor,
        K: torch.Tensor,
        det_threshold: float = 0.5,
        nms_kernel: int | None = None,
        max_humans: int = 20,
        with_vertices: bool = True,
    ) -> Detections:
        """Detect and reconstruct everyone in (B, 3, S, S) normalised images with (B, 3, 3) K of the S x S image."""
        tokens, grid = self.encode(images)
        B = tokens.shape[0]
        logits = self.mlp_classif(tokens)[..., 0]
        score_map = score_from_logits(logits).reshape(B, *grid)
        b, n, offset = self.find_people(tokens, score_map, det_threshold, nms_kernel, max_humans)
        if b.numel() == 0:
            return self.empty_detections(score_map, images.device)
        d = self._decode(images, K, tokens, grid, b, n, offset)
        rotmat = d["rotmat"]
        return Detections(
            batch_index=b,
            score=score_map.flatten(1)[b, n],
            loc=d["loc"],
            dist=d["dist"],
            transl=d["transl"],
            transl_pelvis=d["joints"][:, self.body.spec.pelvis_index],
            rotmat=rotmat,
            rotvec=roma.rotmat_to_rotvec(rotmat),
            shape=d["shape"],
            expression=d["expression"],
            vertices=d["vertices"] if with_vertices else None,
            joints=d["joints"],
            joints_2d=d["joints_2d"],
            cells=torch.stack([d["rows"], d["cols"]], dim=-1),
            offset=offset,
            pred_cam=d["pred_cam"],
            score_map=score_map,
        )

    def forward_train(
        self,
        images: torch.Tensor,
        K: torch.Tensor,
        locations: list[torch.Tensor],
        encoded: tuple[torch.Tensor, tuple[int, int]] | None = None,
    ) -> dict:
        """Dense maps for the detection losses and per-person outputs at the given token indices.

        ``locations[i]`` holds the token indices (row * w + col) of the ground-truth persons of
        image i; per-person outputs are stacked over the batch in that order. ``encoded``: the
        ``encode(images)`` result when the caller already has it (a distillation teacher picks its
        own peaks from the same tokens: one encoder pass per step).
        """
        tokens, grid = encoded if encoded is not None else self.encode(images)
        B = tokens.shape[0]
        logits = self.mlp_classif(tokens)[..., 0]
        offsets = self.mlp_offset(tokens)
        dev = tokens.device
        b = (
            torch.cat([torch.full((len(loc),), i, dtype=torch.long, device=dev) for i, loc in enumerate(locations)])
            if B
            else torch.zeros(0, dtype=torch.long, device=dev)
        )
        n = torch.cat([torch.as_tensor(loc, dtype=torch.long, device=dev).reshape(-1) for loc in locations]) if B else b
        result = {"score_logits": logits, "offsets": offsets, "grid": grid, "tokens": tokens, "batch_index": b}
        if b.numel() == 0:
            spec = self.body.spec
            z = tokens.new_zeros
            result.update(
                pred_cam=z(0, 3),
                dist=z(0),
                rotmat=z(0, spec.num_pose_joints, 3, 3),
                shape=z(0, spec.num_shape),
                expression=z(0, spec.num_expression),
                vertices=z(0, spec.num_vertices, 3),
                joints=z(0, len(spec.joint_names), 3),
                joints_2d=z(0, len(spec.joint_names), 2),
                transl=z(0, 3),
                loc=z(0, 2),
            )
            return result
        d = self._decode(images, K, tokens, grid, b, n, offsets[b, n])
        for key in PERSON_KEYS:
            result[key] = d[key]
        return result

    def empty_detections(self, score_map: torch.Tensor, device) -> Detections:
        """Detections of nobody (zero rows), with the score map kept for callers that show it."""
        spec = self.body.spec
        k = len(spec.joint_names)
        z = lambda *s: torch.zeros(*s, device=device)  # noqa: E731
        return Detections(
            batch_index=torch.zeros(0, dtype=torch.long, device=device),
            score=z(0),
            loc=z(0, 2),
            dist=z(0),
            transl=z(0, 3),
            transl_pelvis=z(0, 3),
            rotmat=z(0, spec.num_pose_joints, 3, 3),
            rotvec=z(0, spec.num_pose_joints, 3),
            shape=z(0, spec.num_shape),
            expression=z(0, spec.num_expression),
            vertices=z(0, spec.num_vertices, 3),
            joints=z(0, k, 3),
            joints_2d=z(0, k, 2),
            cells=torch.zeros(0, 2, dtype=torch.long, device=device),
            offset=z(0, 2),
            pred_cam=z(0, 3),
            score_map=score_map,
        )
