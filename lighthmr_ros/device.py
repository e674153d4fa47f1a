"""Where and in which precision a model runs: one rule for the Predictor, the node, training and tools.

Device rule: ``auto`` is CUDA when present, else the CPU; ``cuda[:N]`` on a machine without CUDA
falls back to the CPU with one warning (a robot must keep running); a malformed name or a CUDA
index that does not exist is a :class:`ConfigError`. Callers that cannot fall back (multi-GPU
training) pass ``fallback=False``.

Precision rule (``auto``): bf16 only where the CPU multiplies bf16 natively (AVX512-BF16 / AMX),
fp16 on CUDA, fp32 otherwise. Emulated bf16 is 4-5x slower than fp32 on AVX2-only CPUs, so it is
never picked there. int8 is never picked by ``auto``: it is an explicit choice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from lighthmr_ros.errors import ConfigError

log = logging.getLogger(__name__)

PRECISION_CHOICES = ("auto", "fp32", "fp16", "bf16", "int8")


def cpu_capability() -> str:
    """The instruction set torch dispatches to on this CPU, refined by the bf16/AMX units.

    One of ``AVX2``, ``AVX512``, ``AVX512-BF16``, ``AMX``, or torch's own string (``DEFAULT``, ...).
    """
    base = str(torch.backends.cpu.get_cpu_capability())
    if getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)():
        return "AMX"
    if getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)():
        return "AVX512-BF16"
    return base


def cpu_has_native(precision: str) -> bool:
    """Whether this CPU multiplies ``precision`` ("bf16" or "fp16") in hardware, where autocast pays off.

    bf16: AVX512-BF16 or AMX; fp16: AMX-FP16. Without it oneDNN emulates the format and the torch
    path is usually slower than in fp32.
    """
    names = {
        "bf16": ("_is_avx512_bf16_supported", "_is_amx_tile_supported"),
        "fp16": ("_is_amx_fp16_supported",),
    }
    checks = [getattr(torch.cpu, n, None) for n in names.get(precision, ())]
    return any(bool(check()) for check in checks if check is not None)


def resolve_device(device: str | torch.device = "auto", fallback: bool = True) -> torch.device:
    """'auto' -> cuda if present else cpu; 'cuda[:N]' without CUDA -> cpu with one warning.

    Raises:
        ConfigError: unknown device name, a CUDA index that does not exist, or CUDA requested
            without CUDA when ``fallback`` is False.
    """
    name = str(device)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            if not fallback:
                raise ConfigError(f"device {name} was requested but CUDA is not available here; use cpu")
            log.warning("CUDA is not available here; running on the CPU instead of %s", name)
            return torch.device("cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(
                f"device {name} does not exist: this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
    elif dev.type != "cpu":
        raise ConfigError(f"unsupported device {name!r}; use auto, cpu, cuda or cuda:N")
    return dev


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision a model runs in and, in one line, why (logged by the node, shown by /api/health)."""

    name: str
    reason: str


def resolve_precision(requested: str, device: torch.device | str) -> PrecisionChoice:
    """Turn ``auto`` into fp32/fp16/bf16 for ``device``; explicit choices are kept and explained.

    Raises:
        ConfigError: a precision that is not one of :data:`PRECISION_CHOICES`.
    """
    dev = torch.device(device)
    if requested not in PRECISION_CHOICES:
        raise ConfigError(f"unknown precision {requested!r}; use one of {', '.join(PRECISION_CHOICES)}")
    where = "CUDA" if dev.type == "cuda" else f"CPU {cpu_capability()}"
    if requested != "auto":
        native = dev.type == "cuda" or requested in ("fp32", "int8") or cpu_has_native(requested)
        note = "" if native else ", emulated on this CPU (slower than fp32)"
        return PrecisionChoice(requested, f"{requested} as requested on {where}{note}")
    if dev.type == "cuda":
        return PrecisionChoice("fp16", "auto -> fp16: CUDA multiplies fp16 natively")
    if cpu_has_native("bf16"):
        return PrecisionChoice("bf16", f"auto -> bf16: this CPU multiplies bf16 natively ({where})")
    return PrecisionChoice("fp32", f"auto -> fp32: this CPU has no native bf16 ({where}), emulation is slower")
