"""onnxruntime backend of the Predictor: the exported graphs run the network, torch does the rest.

``OnnxHMR(model, onnx_dir=None)`` is called like ``HMRModel.forward`` and returns the same
Detections. Where each part runs:
- onnxruntime: encoder + score head (encoder.onnx), offset head + HPH decoder (decoder.onnx, one
  call per image with people in it);
- torch (CPU or the model's device): camera-ray embedding (cached per K and grid), sigmoid, NMS and
  peak picking, 6D -> rotation matrices, distance, body model, camera placement, rotation vectors.
Without ``onnx_dir`` the model is exported to a temporary folder first (a few seconds).
``precision="int8"`` runs the export's int8 graphs (``lighthmr export --onnx DIR --int8``):
approximate, not within TOLERANCE of torch, see onnx_export.quantize_int8.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
import roma
import torch

from lighthmr_ros.errors import ConfigError
from lighthmr_ros.model.heads import score_from_logits
from lighthmr_ros.model.hmr import Detections
from lighthmr_ros.model.hph import rot6d_to_rotmat
from lighthmr_ros.onnx_export import (
    DECODER_FILE,
    ENCODER_FILE,
    INT8_SCHEME,
    export_onnx,
    read_meta,
    weights_fingerprint,
)
from lighthmr_ros.perf import torch_threads

PRECISIONS = ("fp32", "int8")

log = logging.getLogger(__name__)


def make_session(path: Path, threads: int | None = None):
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise ConfigError("the onnxruntime backend needs the 'onnxruntime' package: pip install onnxruntime") from exc
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads or torch.get_num_threads()
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Busy-wait during a run but stop right after it: torch (body model, placement) runs next on the
    # same cores, and threads left spinning made it several times slower on 2 cores (measured at 448 px:
    # 150 ms left spinning, 110 ms with no spinning at all, 104 ms with this).
    opts.add_session_config_entry("session.force_spinning_stop", "1")
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types (InvalidProtobuf, Fail, ...)
        raise ConfigError(
            f"onnxruntime cannot load {path} ({type(exc).__name__}: {str(exc).strip()[:200]}); "
            f"re-export it with `lighthmr export --onnx {path.parent}`"
        ) from exc


class OnnxHMR:
    """Drop-in for ``HMRModel.__call__`` at inference (see module docstring)."""

    def __init__(self, model, onnx_dir: str | Path | None = None, threads: int | None = None, precision: str = "fp32"):
        if precision not in PRECISIONS:
            raise ConfigError(f"the onnxruntime backend runs in {' or '.join(PRECISIONS)}, not {precision!r}")
        self.model = model.eval()
        self.precision = precision
        self._tmp = None
        if onnx_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="lighthmr_onnx_")
            onnx_dir = export_onnx(model, self._tmp.name, int8=precision == "int8")
        onnx_dir = Path(onnx_dir).expanduser()
        meta = read_meta(onnx_dir)
        cfg = model.config
        if (
            meta["config"].get("name") != cfg.name
            or meta["image_size"] != cfg.image_size
            or meta["body_model"] != model.body.spec.name
        ):
            raise ConfigError(
                f"the ONNX export in {onnx_dir} is of {meta['config'].get('name')} at {meta['image_size']} px with "
                f"{meta['body_model']}, not {cfg.name} at {cfg.image_size} px with {model.body.spec.name}; re-export it"
            )
        if self._tmp is None and meta["weights_sha1"] != weights_fingerprint(model):
            raise ConfigError(
                f"the ONNX export in {onnx_dir} was made from other weights than this checkpoint; "
                f"re-export with `lighthmr export --onnx {onnx_dir} --checkpoint CHECKPOINT`"
            )
        files = {ENCODER_FILE: ENCODER_FILE, DECODER_FILE: DECODER_FILE}
        if precision == "int8":
            files = meta.get("int8") or {}
            if not all(f in files and (onnx_dir / files[f]).is_file() for f in (ENCODER_FILE, DECODER_FILE)):
                raise ConfigError(
                    f"the ONNX export in {onnx_dir} has no int8 graphs; re-export with "
                    f"`lighthmr export --onnx {onnx_dir} --int8` (same --checkpoint)"
                )
            if meta.get("int8_scheme") != INT8_SCHEME:
                raise ConfigError(
                    f"the int8 graphs in {onnx_dir} use 8-bit weights, which saturate in the AVX2 "
                    f"integer kernels (wrong results on CPUs without VNNI); re-export with "
                    f"`lighthmr export --onnx {onnx_dir} --int8` (same --checkpoint)"
                )
        self.meta = meta
        self.onnx_dir = onnx_dir
        self.encoder = make_session(onnx_dir / files[ENCODER_FILE], threads)
        self.decoder = make_session(onnx_dir / files[DECODER_FILE], threads)
        self.decoder_outputs = list(meta["decoder_outputs"])
        self.grid = tuple(meta["grid"])
        self._camera_cache: dict[bytes, torch.Tensor] = {}

    # ---------------------------------------------------------------- pieces
    def camera_embedding(self, K: torch.Tensor) -> torch.Tensor:
        """(N, C) Fourier ray embedding of one image's K (3, 3), cached: cameras rarely change."""
        key = K.detach().float().cpu().numpy().tobytes()
        emb = self._camera_cache.get(key)
        if emb is None:
            with torch.inference_mode():
                emb = self.model.camera(self.model.camera_rays(K[None].float(), self.grid))[0].float().cpu()
            if len(self._camera_cache) > 64:
                self._camera_cache.clear()
            self._camera_cache[key] = emb
        return emb

    def __call__(
        self,
        images: torch.Tensor,
        K: torch.Tensor,
        det_threshold: float = 0.5,
        nms_kernel: int | None = None,
        max_humans: int = 20,
        with_vertices: bool = True,
    ) -> Detections:
        model = self.model
        dev = images.device
        with torch.inference_mode(), torch_threads(1):  # the torch steps between the graphs: see perf.torch_threads
            batch = images.detach().float().cpu().numpy()
            runs = [
                self.encoder.run(None, {"images": batch[i : i + 1]}) for i in range(batch.shape[0])
            ]  # static batch of 1
            tokens_np = np.concatenate([r[0] for r in runs])
            logits_np = np.concatenate([r[1] for r in runs])
            B = tokens_np.shape[0]
            score_map = score_from_logits(torch.from_numpy(logits_np)).reshape(B, *self.grid)
            b, n, _ = model.find_people(torch.from_numpy(tokens_np), score_map, det_threshold, nms_kernel, max_humans)
            if b.numel() == 0:
                return model.empty_detections(score_map.to(dev), dev)
            outs: dict[str, list[np.ndarray]] = {k: [] for k in self.decoder_outputs}
            for img in torch.unique(b).tolist():  # b is sorted (raster order): per-image slices keep it
                idx = n[b == img]
                camera = self.camera_embedding(K[img])[None].numpy()
                res = self.decoder.run(
                    None, {"tokens": tokens_np[img : img + 1], "camera": camera, "index": idx.numpy()}
                )
                for k, v in zip(self.decoder_outputs, res, strict=False):
                    outs[k].append(v)
        with torch.inference_mode():  # the body model and placement: torch's own thread count
            out = {k: torch.from_numpy(np.concatenate(v)).to(dev) for k, v in outs.items()}
            b, n = b.to(dev), n.to(dev)
            spec = model.body.spec
            P = b.shape[0]
            rotmat = rot6d_to_rotmat(out["pose6d"].reshape(P, spec.num_pose_joints, 6))
            expression = out["expression"] if "expression" in out else torch.zeros(P, 0, device=dev)
            gw = self.grid[1]
            rows, cols = n // gw, n % gw
            offset = out["offset"].float()
            loc = (torch.stack([cols, rows], dim=-1).float() + 0.5 + offset) * model.stride
            K_det = K[b].float()
            dist = model.distance(out["cam"], K_det[:, 0, 0], images.shape[-1])
            transl, verts, joints, j2d = model.place(rotmat, out["shape"], expression, loc, dist, K_det)
            score_map = score_map.to(dev)
            return Detections(
                batch_index=b,
                score=score_map.flatten(1)[b, n],
                loc=loc,
                dist=dist,
                transl=transl,
                transl_pelvis=joints[:, spec.pelvis_index],
                rotmat=rotmat,
                rotvec=roma.rotmat_to_rotvec(rotmat),
                shape=out["shape"].float(),
                expression=expression.float(),
                vertices=verts if with_vertices else None,
                joints=joints,
                joints_2d=j2d,
                cells=torch.stack([rows, cols], dim=-1),
                offset=offset,
                pred_cam=out["cam"].float(),
                score_map=score_map,
            )

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


# Agreement of onnxruntime with torch eager (fp32, CPU), checked by tests and `lighthmr export`.
TOLERANCE = {"vertices": 1e-4, "joints": 1e-4, "joints_2d": 1e-2, "rotmat": 1e-4, "dist": 1e-4, "score": 1e-5}


def compare_backends(
    model, onnx_dir: str | Path | None = None, persons: int = 3, seed: int = 0, precision: str = "fp32"
) -> dict[str, float]:
    """Max abs differences (metres, pixels, unitless) between torch and onnxruntime on a random batch of 2."""
    gen = torch.Generator().manual_seed(seed)
    S = model.config.image_size
    images = torch.randn(2, 3, S, S, generator=gen)
    f = S / 1.2
    K = torch.tensor(
        [
            [[f, 0.0, S / 2], [0.0, f, S / 2], [0.0, 0.0, 1.0]],
            [[0.8 * f, 0.0, S / 2 + 3], [0.0, 0.8 * f, S / 2 - 5], [0.0, 0.0, 1.0]],
        ]
    )
    model = model.eval()
    with torch.inference_mode():
        ref = model(
            images.to(next(model.parameters()).device),
            K.to(next(model.parameters()).device),
            det_threshold=0.0,
            max_humans=persons,
        )
    runner = OnnxHMR(model, onnx_dir, precision=precision)
    try:
        got = runner(images, K, det_threshold=0.0, max_humans=persons)
    finally:
        runner.close()
    if not torch.equal(ref.batch_index.cpu(), got.batch_index.cpu()) or not torch.equal(
        ref.cells.cpu(), got.cells.cpu()
    ):
        return {k: float("inf") for k in TOLERANCE}
    return {k: float((getattr(ref, k).float().cpu() - getattr(got, k).float().cpu()).abs().max()) for k in TOLERANCE}
