"""The network's linear layers through oneDNN on the CPU, with the MLPs' GELU fused in.

Why: PyTorch's fp32 ``nn.Linear`` on the CPU calls MKL's sgemm, which on this project's machine
(AMD EPYC, AVX-512) reaches 90-150 GFLOP/s on the encoders' matrix shapes, while oneDNN, already in
every x86 PyTorch build for convolutions, reaches 140-180 GFLOP/s on the same shapes (1.1-1.6x;
narrow ones such as 7056 x 128 -> 512 gain the most) and can apply the GELU that follows an MLP's
first layer while its output is still in cache. Measured on whole encoders at 672 px, 2 threads:
student 1.15x, teacher ViT-S 1.10x; outputs equal to 5e-6.

The op used, ``torch.ops.mkldnn._linear_pointwise``, is the one torch.compile's CPU backend emits
for the same purpose; it is not a public API, so ``onednn_linears`` checks it against ``F.linear``
on a small input before rewriting anything, and ``OneDNNLinear`` falls back to ``F.linear`` whenever
the fast op would be wrong or invisible: autograd, autocast, non-float32 or non-CPU tensors,
tracing / ONNX export / torch.compile, and dispatch modes such as FLOP counters.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import _get_current_dispatch_mode

log = logging.getLogger(__name__)


def _op():
    return getattr(torch.ops.mkldnn, "_linear_pointwise", None) if torch.backends.mkldnn.is_available() else None


def _fast_path_allowed(x: torch.Tensor, weight: torch.Tensor) -> bool:
    if x.device.type != "cpu" or x.dtype != torch.float32 or weight.dtype != torch.float32:
        return False
    if torch.is_grad_enabled() or torch.is_autocast_enabled("cpu"):
        return False
    if (
        torch.jit.is_tracing()
        or torch.jit.is_scripting()
        or torch.onnx.is_in_onnx_export()
        or torch.compiler.is_compiling()
    ):
        return False
    return _get_current_dispatch_mode() is None


class OneDNNLinear(nn.Module):
    """``nn.Linear`` (optionally followed by exact GELU) whose CPU inference runs in oneDNN.

    Holds the original ``weight`` and ``bias`` parameters under the same names, so state dicts,
    weight fingerprints and ONNX exports see an ``nn.Linear``.
    """

    def __init__(self, linear: nn.Linear, gelu: bool = False):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight = linear.weight
        self.bias = linear.bias
        self.gelu = gelu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _fast_path_allowed(x, self.weight):
            return _op()(x, self.weight, self.bias, "gelu" if self.gelu else "none", [], "none" if self.gelu else "")
        y = F.linear(x, self.weight, self.bias)
        return F.gelu(y) if self.gelu else y

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}, gelu={self.gelu}"
        )


def _op_works() -> bool:
    """The fast op exists here and computes F.linear (and F.gelu of it) on a small input."""
    op = _op()
    if op is None:
        return False
    try:
        with torch.inference_mode():
            g = torch.Generator().manual_seed(0)
            x, w, b = (torch.randn(s, generator=g) for s in ((2, 5, 8), (6, 8), (6,)))
            ref = F.linear(x, w, b)
            ok = torch.allclose(op(x, w, b, "none", [], ""), ref, atol=1e-5)
            return ok and torch.allclose(op(x, w, b, "gelu", [], "none"), F.gelu(ref), atol=1e-5)
    except (RuntimeError, TypeError) as exc:  # op signature changed in this torch
        log.info("oneDNN linear not used: %s", exc)
        return False


def _is_exact_gelu(m: nn.Module) -> bool:
    return type(m) is nn.GELU and m.approximate == "none"


def _mlp_types() -> tuple[type, ...]:
    """timm MLPs whose forward is fc1 -> act -> ... -> fc2 (not GluMlp & co, which split fc1's output)."""
    from timm.layers import Mlp
    from timm.models.tiny_vit import NormMlp

    return (Mlp, NormMlp)


def onednn_linears(module: nn.Module) -> int:
    """Replace every ``nn.Linear`` under ``module`` by a OneDNNLinear, fusing MLP GELUs; in place.

    In timm's Mlp / NormMlp (TinyViT, ViT) with an exact GELU, ``fc1`` takes the GELU and ``act``
    becomes Identity. Returns the number of layers replaced (0 when oneDNN's op is unavailable or
    disagrees with F.linear here).
    """
    if not _op_works():
        return 0
    mlps = _mlp_types()
    count = 0
    for parent in list(module.modules()):
        fc1, act = getattr(parent, "fc1", None), getattr(parent, "act", None)
        if type(parent) in mlps and type(fc1) is nn.Linear and act is not None and _is_exact_gelu(act):
            parent.fc1, parent.act = OneDNNLinear(fc1, gelu=True), nn.Identity()
            count += 1
        for name, child in list(parent.named_children()):
            if type(child) is nn.Linear:
                setattr(parent, name, OneDNNLinear(child))
                count += 1
    return count
