"""Inference-only speed-ups applied by the Predictor to models it builds or loads itself.

Measured on the 2-core CPU machine (see docs/performance.md): folding TinyViT's BatchNorms into
their convolutions (timm's ``ConvNorm.fuse()``) and channels_last weights for its convolution
stages make the student 1.05-1.15x faster end to end (encoder 1.08x at 448 px, 1.16x at 672 px,
2 threads), with outputs equal to about 1e-6; on the CPU, TinyViT's window attention written out
(``fused_attn = False``) is a further 1.03-1.09x on the encoder, and oneDNN linear layers
(``perf.onednn``) 1.15x on the student's encoder and 1.10x on the teacher's at 672 px.
They change the module tree (no BatchNorm left to train), so they are never applied to a model
instance handed to the Predictor (it may be a model in training).

``keep_freed_memory`` is process-wide, not per model: see its docstring.
"""
from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import platform

import torch
from torch import nn

log = logging.getLogger(__name__)

# glibc mallopt() parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_heap_kept: bool | None = None


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


def explicit_window_attention(module: nn.Module) -> int:
    """Make timm TinyViT attention compute softmax(q k^T * scale + bias) v itself; returns the count.

    Why: with its additive relative-position bias, ``F.scaled_dot_product_attention`` on the CPU
    takes the math kernel plus "safe softmax" checks (isneginf / all / where over every score),
    about 7 % of the student's encoder time at 672 px. The written-out form is the same function
    (outputs equal to 3e-6). On CUDA the fused kernel is the fast one, so only call this for the CPU.
    """
    try:
        from timm.models.tiny_vit import Attention
    except ImportError:
        return 0
    count = 0
    for m in module.modules():
        if isinstance(m, Attention) and getattr(m, "fused_attn", False):
            m.fused_attn = False
            count += 1
    return count


def optimize_for_inference(model: nn.Module, device: torch.device | str = "cpu") -> dict[str, object]:
    """Fold BatchNorms and use channels_last in convolutional encoders; on the CPU also write out
    TinyViT's window attention and run the linear layers in oneDNN (lighthmr_ros.perf.onednn).
    In place, eval only."""
    model.eval()
    if isinstance(getattr(model, "body_prefixes", None), tuple) and not getattr(model, "weights_sha1", None):
        from lighthmr_ros.onnx_export import weights_fingerprint

        model.weights_sha1 = weights_fingerprint(model)  # of the weights as loaded, before folding (see there)
    done: dict[str, object] = {"fused_conv_bn": fuse_conv_bn(model)}
    trunk = getattr(getattr(model, "backbone", None), "trunk", None)  # TinyViT (timm); DINOv2 has one patch conv only
    if trunk is not None and any(isinstance(m, nn.Conv2d) for m in trunk.modules()):
        trunk.to(memory_format=torch.channels_last)
        done["channels_last"] = True
    if torch.device(device).type == "cpu":
        done["explicit_attention"] = explicit_window_attention(model)
        from lighthmr_ros.perf.onednn import onednn_linears

        done["onednn_linears"] = onednn_linears(model)
    return done


def keep_freed_memory(limit_mb: int = 1024) -> bool:
    """Make glibc keep freed memory (up to ``limit_mb``) for reuse instead of returning it to the OS.

    Why: a CPU forward allocates and frees the same large activations every frame (the student's
    first stage alone: 29 MB per tensor at 672 px). With glibc's defaults many of them are mmap'ed
    and unmapped again, or trimmed off the heap, so each frame faults in fresh zeroed pages:
    20,000-40,000 page faults per forward at 672 px, measured as 5-25 % of the encoder's time.
    Raising the mmap and trim thresholds makes the second and later frames reuse the heap (0 faults).
    onnxruntime's arena allocator does the same for its own tensors.
    Cost: the process keeps up to ``limit_mb`` of freed memory (its RSS stays at its peak).
    Process-wide (malloc has one configuration), so it is applied once, on Linux/glibc only, and
    never when the user set glibc's own malloc tunables (MALLOC_*_ / GLIBC_TUNABLES) in the
    environment. Returns whether the setting is in effect.
    """
    global _heap_kept
    if _heap_kept is not None:
        return _heap_kept
    _heap_kept = False
    user_set = "GLIBC_TUNABLES" in os.environ or any(k.startswith("MALLOC_") and k.endswith("_") for k in os.environ)
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc" or user_set:
        return False
    try:
        libc = ctypes.CDLL(None)
        limit = int(limit_mb) << 20
        _heap_kept = bool(libc.mallopt(_M_MMAP_THRESHOLD, limit)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, limit))
    except (OSError, AttributeError) as exc:  # no mallopt in this libc
        log.debug("keep_freed_memory: %s", exc)
    return _heap_kept


def heap_kept() -> bool:
    """Whether keep_freed_memory() is in effect in this process."""
    return bool(_heap_kept)


@contextlib.contextmanager
def torch_threads(n: int):
    """Run torch ops in the block with ``n`` intra-op threads (then restore).

    Why (onnxruntime backend): after a parallel torch op, PyTorch's OpenMP workers busy-wait for a
    while; an onnxruntime run started in that window shares the cores with them. Running the small
    torch steps that come right before an onnxruntime run (normalising the image, peak picking) on
    one thread leaves no worker spinning: measured 5-10 % off the onnxruntime path at 448 px on 2 cores.
    """
    before = torch.get_num_threads()
    if n == before:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


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
