"""Inference-only speed-ups applied by the Predictor to models it builds or loads itself.

Measured on the 2-core CPU machine (see docs/performance.md): folding TinyViT's BatchNorms into
their convolutions (timm's ``ConvNorm.fuse()``) and channels_last weights for its convolution
stages make the student 1.05-1.15x faster end to end (encoder 1.08x at 448 px, 1.16x at 672 px,
2 threads), with outputs equal to about 1e-6.
Both change the module tree (no BatchNorm left to train), so they are never applied to a model
instance handed to the Predictor (it may be a model in training).
"""
from __future__ import annotations

import torch
from torch import nn


def _conv_norm_type():
    try:
        from timm.models.tiny_vit import ConvNorm
    except ImportError:  # older timm: nothing to fuse
        return None
    return ConvNorm


def has_conv_bn(module: nn.Module) -> bool:
    """Whether ``module`` still holds a timm TinyViT ``ConvNorm`` that fuse_conv_bn would fold."""
    conv_norm = _conv_norm_type()
    return conv_norm is not None and any(isinstance(m, conv_norm) for m in module.modules())


def fuse_conv_bn(module: nn.Module) -> int:
    """Replace every timm TinyViT ``ConvNorm`` (conv + BatchNorm) by one equivalent conv; returns the count."""
    ConvNorm = _conv_norm_type()
    if ConvNorm is None:
        return 0
    count = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, ConvNorm):
                setattr(parent, name, child.fuse())
                count += 1
    return count


def optimize_for_inference(model: nn.Module) -> dict[str, object]:
    """Fold BatchNorms and use channels_last in convolutional encoders (CPU and CUDA). In place, eval only."""
    model.eval()
    done: dict[str, object] = {"fused_conv_bn": fuse_conv_bn(model)}
    trunk = getattr(getattr(model, "backbone", None), "trunk", None)  # TinyViT (timm); DINOv2 has one patch conv only
    if trunk is not None and any(isinstance(m, nn.Conv2d) for m in trunk.modules()):
        trunk.to(memory_format=torch.channels_last)
        done["channels_last"] = True
    return done


def build_off_main_thread(factory):
    """Run ``factory()`` (e.g. building a Predictor) in a short-lived thread and return its result.

    Why: with libgomp (PyTorch's OpenMP on Linux), once a long-lived thread such as the main thread
    has run a parallel torch op it keeps an idle OpenMP pool, and every forward run later from
    ANOTHER thread (a ROS node's inference worker, a web server's thread pool) was about 30-40 %
    slower (measured on 2 cores: 180 ms vs 130 ms for the student at 448 px). A builder thread that
    exits takes its pool with it. Exceptions from ``factory`` are re-raised here.
    """
    import threading

    box: dict = {}

    def target() -> None:
        try:
            box["value"] = factory()
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, name="lighthmr_build", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]
