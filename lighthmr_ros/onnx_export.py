"""Export an HMRModel's network to ONNX as two graphs, so the number of people can vary.

- ``encoder.onnx``: images (1, 3, S, S) -> tokens (1, N, D), score_logits (1, N). Static shapes: with a
  fixed batch the exporter writes TinyViT's window-partition shape arithmetic as constants (1,621
  nodes instead of 1,922 at 448 px), measured 5-7 % faster than a dynamic batch axis; the backend
  runs it once per image, which on a CPU costs what a batch costs.
- ``decoder.onnx``: one image's tokens (1, N, D), its camera-ray embedding (1, N, C) and the token
  indices of its P detected people (P,) -> offset (P, 2), pose6d (P, 6J), shape (P, S),
  expression (P, E) (absent when E = 0), cam (P, 3). Dynamic P.
- ``lighthmr_onnx.json``: the model config, body model, input size and a fingerprint of the weights,
  so a Predictor refuses graphs exported from other weights.
- with ``int8=True`` also ``encoder.int8.onnx`` and ``decoder.int8.onnx``: the same graphs with their
  MatMul/Gemm weights quantised per output channel (onnxruntime dynamic quantisation: activations are
  quantised to u8 per tensor at run time, so no calibration data is needed; the convolutions stay
  fp32). The weights use 7 bits (s7, in [-64, 64]: ``reduce_range``) so that the graphs cannot
  overflow in ANY integer kernel onnxruntime dispatches: the AVX2 and AVX-512 (non-VNNI) u8 x s8
  kernels sum two u8 x s8 products into a saturating int16 (vpmaddubsw); with 8-bit weights that sum
  reaches 2 x 255 x 127 = 64,770 and clips (+10 mm PA-MPJPE on an AVX2 host), with 7-bit weights it
  is at most 2 x 255 x 64 = 32,640 <= 32,767. VNNI kernels accumulate in int32 and never saturated.
  See docs/performance.md for accuracy and speed per instruction set.

What stays outside the graphs (torch, see onnx_backend.py): letterboxing, the camera-ray embedding
(it needs K^-1 and is cached per K), score sigmoid + max-pool NMS + peak picking (data-dependent
sizes), 6D -> rotation matrices, distance, the body model and the camera placement.
"""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
from pathlib import Path

import torch
from torch import nn

from lighthmr_ros.errors import ConfigError

log = logging.getLogger(__name__)

ENCODER_FILE = "encoder.onnx"
DECODER_FILE = "decoder.onnx"
META_FILE = "lighthmr_onnx.json"
INT8_FILES = {ENCODER_FILE: "encoder.int8.onnx", DECODER_FILE: "decoder.int8.onnx"}
# How the int8 graphs are made; read_meta refuses int8 graphs of another scheme (they may saturate).
INT8_SCHEME = "dynamic-u8-activations-s7-weights-per-channel"
INT16_MAX = 32767
OPSET = 17


class EncoderGraph(nn.Module):
    """Encoder + per-token detection score (the offset head runs per person in the decoder graph)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.backbone = model.backbone
        self.mlp_classif = model.mlp_classif

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens, _ = self.backbone(images)
        return tokens, self.mlp_classif(tokens)[..., 0]


class DecoderGraph(nn.Module):
    """HPH for the P people of ONE image: the single-image case of HPH.forward, with no padding,
    so P is a plain dynamic axis (HPH.forward pads a batch of images to the largest P)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.hph = model.x_attention_head
        self.mlp_offset = model.mlp_offset
        self.with_expression = self.hph.num_expression > 0

    def forward(self, tokens: torch.Tensor, camera: torch.Tensor, index: torch.Tensor):
        hph = self.hph
        grid_w = hph.cross_queries_y.shape[0]
        rows, cols = index // grid_w, index % grid_w
        context = torch.cat([tokens, camera], dim=-1)[0]  # (N, C)
        queries = context[index] + hph.cross_queries_x[rows] + hph.cross_queries_y[cols]
        values = hph.cross_values_x[rows] + hph.cross_values_y[cols]
        context = context.index_add(0, index, values)[None]
        P = queries.shape[0]
        means = [hph.init_body_pose, hph.init_betas, hph.init_cam]
        token = torch.cat([queries] + [m.expand(P, -1) for m in means], dim=-1)
        out = hph.transformer(token[None], context, None)[0]
        offset = self.mlp_offset(tokens[0, index])
        outputs = [offset, hph.decpose(out) + hph.init_body_pose, hph.decshape(out) + hph.init_betas]
        if self.with_expression:
            outputs.append(hph.decexpression(out) + hph.init_expression)
        outputs.append(hph.deccam(out) + hph.init_cam)
        return tuple(outputs)


def weights_fingerprint(model: nn.Module) -> str:
    """sha1 of the learned weights as loaded (body-model data excluded): ties exported graphs to a model.

    Hashed before any inference rewrite: optimize_for_inference stores it on the model
    (``weights_sha1``) before folding BatchNorms, because folded weights are computed in float
    arithmetic that differs in the last bit between CPUs (rsqrt on AVX2 vs AVX-512), so a graph
    exported on one machine would be refused by the same checkpoint on another.
    """
    stored = getattr(model, "weights_sha1", None)
    if stored:
        return stored
    h = hashlib.sha1()
    prefixes = tuple(getattr(model, "body_prefixes", ()))
    for name, t in sorted(model.state_dict().items()):
        if prefixes and name.startswith(prefixes):
            continue
        h.update(name.encode())
        h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def decoder_output_names(model: nn.Module) -> list[str]:
    names = ["offset", "pose6d", "shape"]
    if model.x_attention_head.num_expression > 0:
        names.append("expression")
    return names + ["cam"]


def quantize_int8(onnx_dir: Path) -> dict[str, str]:
    """Write the int8 copies of both graphs next to them; returns {fp32 file: int8 file}."""
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as exc:
        raise ConfigError("int8 export needs the 'onnxruntime' package: pip install onnxruntime") from exc
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantiser logs advice about static pre-processing on the root logger
    try:
        for src, dst in INT8_FILES.items():
            tmp = onnx_dir / f".{dst}.tmp"
            # reduce_range: 7-bit weights, so no u8 x s8 pair sum can saturate int16 (module docstring)
            quantize_dynamic(
                str(onnx_dir / src),
                str(tmp),
                op_types_to_quantize=["MatMul", "Gemm"],
                per_channel=True,
                reduce_range=True,
                weight_type=QuantType.QInt8,
            )
            tmp.replace(onnx_dir / dst)
    finally:
        root.setLevel(level)
    return dict(INT8_FILES)


def int8_weight_ranges(onnx_path: str | Path) -> dict[str, tuple[int, int]]:
    """(min, max) of every int8 weight tensor of a quantised graph, by initializer name."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    out = {}
    for init in graph.initializer:
        if init.data_type == onnx.TensorProto.INT8:
            w = numpy_helper.to_array(init)
            out[init.name] = (int(w.min(initial=0)), int(w.max(initial=0)))
    return out


def worst_pair_sum(onnx_path: str | Path) -> int:
    """Largest |a1 w1 + a2 w2| a u8 x s8 kernel can form with this graph's weights (a in [0, 255]).

    The AVX2 / AVX-512 (non-VNNI) kernels keep that pair sum in a saturating int16: a graph is safe
    on every x86 CPU when the result is <= INT16_MAX.
    """
    ranges = int8_weight_ranges(onnx_path)
    if not ranges:
        return 0
    widest = max(max(-lo, hi) for lo, hi in ranges.values())
    return 2 * 255 * widest


def export_onnx(
    model: nn.Module, out_dir: str | Path, opset: int = OPSET, provenance: dict | None = None, int8: bool = False
) -> Path:
    """Write encoder.onnx, decoder.onnx and lighthmr_onnx.json for ``model`` into ``out_dir``
    (and their int8 copies with ``int8``)."""
    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} is a file; give a folder for the ONNX export (it holds two graphs and a JSON file)")
    out.mkdir(parents=True, exist_ok=True)
    model = model.eval().float().cpu()
    cfg = model.config
    S = cfg.image_size
    g = S // model.stride
    N = g * g
    images = torch.randn(1, 3, S, S)
    enc = EncoderGraph(model).eval()
    dec = DecoderGraph(model).eval()
    with torch.no_grad():
        tokens, _ = enc(images)
    camera = torch.randn(1, N, model.camera.channels)
    index = torch.tensor([0, N // 2 + g // 2, N - 1], dtype=torch.long)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about python ints from shapes (static S, by design)
        with torch.no_grad():
            torch.onnx.export(
                enc,
                (images,),
                str(out / ENCODER_FILE),
                dynamo=False,
                opset_version=opset,
                input_names=["images"],
                output_names=["tokens", "score_logits"],
            )
            names = decoder_output_names(model)
            torch.onnx.export(
                dec,
                (tokens, camera, index),
                str(out / DECODER_FILE),
                dynamo=False,
                opset_version=opset,
                input_names=["tokens", "camera", "index"],
                output_names=names,
                dynamic_axes={"index": {0: "persons"}, **{n: {0: "persons"} for n in names}},
            )
    for stale in INT8_FILES.values():  # never leave int8 graphs of other weights beside new fp32 ones
        (out / stale).unlink(missing_ok=True)
    int8_files = quantize_int8(out) if int8 else {}
    meta = {
        "format": "lighthmr_onnx/1",
        "config": cfg.to_dict(),
        "body_model": model.body.spec.name,
        "image_size": S,
        "grid": [g, g],
        "token_dim": int(tokens.shape[-1]),
        "camera_channels": int(model.camera.channels),
        "decoder_outputs": names,
        "opset": opset,
        "weights_sha1": weights_fingerprint(model),
        "int8": int8_files,
        "int8_scheme": INT8_SCHEME if int8_files else None,
        "provenance": provenance or {},
    }
    (out / META_FILE).write_text(json.dumps(meta, indent=2))
    log.info("exported %s to %s", cfg.name, out)
    return out


def read_meta(onnx_dir: str | Path) -> dict:
    path = Path(onnx_dir).expanduser()
    meta_path = path / META_FILE
    missing = [f for f in (ENCODER_FILE, DECODER_FILE, META_FILE) if not (path / f).is_file()]
    if missing:
        raise ConfigError(
            f"{path} is not a lighthmr ONNX export (missing {', '.join(missing)}); "
            f"create it with `lighthmr export --onnx {path}`"
        )
    try:
        return json.loads(meta_path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {meta_path} ({exc}); re-export with `lighthmr export --onnx`") from exc
