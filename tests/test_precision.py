"""Precision on every x86 CPU: the 'auto' rule reads this CPU, and int8 graphs cannot saturate anywhere.

The int8 checks do not depend on the CPU the tests run on: they check the arithmetic of the graphs
(their weights' range) and emulate the AVX2 u8 x s8 kernel (vpmaddubsw: two u8 x s8 products summed
into a saturating int16, then vpmaddwd into int32) in numpy, so an AVX-512/VNNI host proves the AVX2
behaviour too. tests/test_default_model.py measures the accuracy on whatever CPU runs it.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lighthmr_ros import device as device_mod
from lighthmr_ros.device import cpu_capability, cpu_has_native, resolve_precision
from lighthmr_ros.errors import ConfigError

INT16_MIN, INT16_MAX = -32768, 32767


def avx2_u8s8_matmul(a: np.ndarray, w: np.ndarray) -> np.ndarray:
    """(M, K) u8 x (K, N) s8 -> (M, N) int32 as the AVX2 kernel computes it: adjacent k pairs are
    summed in a saturating int16 before the int32 accumulation."""
    a32, w32 = a.astype(np.int32), w.astype(np.int32)
    if a32.shape[1] % 2:
        a32 = np.pad(a32, ((0, 0), (0, 1)))
        w32 = np.pad(w32, ((0, 1), (0, 0)))
    prods = a32[:, :, None] * w32[None, :, :]  # (M, K, N)
    pairs = prods[:, 0::2, :] + prods[:, 1::2, :]
    return np.clip(pairs, INT16_MIN, INT16_MAX).sum(axis=1)


def quantize_symmetric(w: np.ndarray, qmax: int) -> np.ndarray:
    """Per output channel (column) symmetric quantisation to [-qmax, qmax]."""
    scale = np.abs(w).max(axis=0, keepdims=True) / qmax
    return np.clip(np.round(w / np.maximum(scale, 1e-12)), -qmax, qmax).astype(np.int8)


def test_the_emulated_avx2_kernel_saturates_with_8_bit_weights_and_not_with_7_bit():
    """Why the export uses reduce_range: bright activations (u8 near 255) times 8-bit weights near
    +-127 overflow the int16 pair sum; with 7-bit weights no input can."""
    rng = np.random.default_rng(0)
    w = rng.normal(size=(64, 16)).astype(np.float32)
    a = np.full((4, 64), 255, np.uint8)
    a[1] = rng.integers(0, 256, 64)
    w8, w7 = quantize_symmetric(w, 127), quantize_symmetric(w, 64)
    exact8 = a.astype(np.int32) @ w8.astype(np.int32)
    assert not np.array_equal(avx2_u8s8_matmul(a, w8), exact8)  # the defect, reproduced
    exact7 = a.astype(np.int32) @ w7.astype(np.int32)
    assert np.array_equal(avx2_u8s8_matmul(a, w7), exact7)


@pytest.mark.slow
def test_exported_int8_graphs_cannot_saturate_on_any_x86_kernel(tmp_path):
    """The real export of the default model: every int8 weight is in [-64, 64], so the worst pair
    sum fits int16, and the emulated AVX2 kernel equals exact integer arithmetic on its weights."""
    import onnx
    from onnx import numpy_helper

    from lighthmr_ros.inference import DEFAULT_CHECKPOINT
    from lighthmr_ros.model.checkpoint import load_checkpoint
    from lighthmr_ros.onnx_export import INT8_FILES, INT8_SCHEME, export_onnx, read_meta, worst_pair_sum

    out = export_onnx(load_checkpoint(DEFAULT_CHECKPOINT, device="cpu"), tmp_path / "onnx", int8=True)
    assert read_meta(out)["int8_scheme"] == INT8_SCHEME
    rng = np.random.default_rng(1)
    checked = 0
    for name in INT8_FILES.values():
        assert worst_pair_sum(out / name) <= INT16_MAX
        graph = onnx.load(str(out / name)).graph
        weights = [numpy_helper.to_array(t) for t in graph.initializer if t.data_type == onnx.TensorProto.INT8]
        assert weights, f"{name} holds no int8 weights"
        for w in weights:
            if w.ndim != 2:
                continue
            assert w.min() >= -64 and w.max() <= 64
            a = rng.integers(0, 256, (3, w.shape[0])).astype(np.uint8)
            a[0] = 255  # the worst case for positive weights
            assert np.array_equal(avx2_u8s8_matmul(a, w), a.astype(np.int32) @ w.astype(np.int32))
            checked += 1
    assert checked >= 10


def test_int8_graphs_of_the_old_8_bit_scheme_are_refused(tmp_path):
    import json

    from lighthmr_ros.model import create_model
    from lighthmr_ros.onnx_backend import OnnxHMR
    from lighthmr_ros.onnx_export import META_FILE, export_onnx

    model = create_model("lighthmr_tinyvit5m", body_model="anny", image_size=64)
    out = export_onnx(model, tmp_path / "onnx", int8=True)
    meta = json.loads((out / META_FILE).read_text())
    meta.pop("int8_scheme")  # what exports made before the 7-bit scheme look like
    (out / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match="saturate in the AVX2"):
        OnnxHMR(model, out, precision="int8")


def test_auto_precision_follows_this_cpu():
    choice = resolve_precision("auto", "cpu")
    assert choice.name == ("bf16" if cpu_has_native("bf16") else "fp32"), choice
    assert choice.reason.startswith("auto -> ") and cpu_capability() in choice.reason
    assert cpu_capability() in ("AVX2", "AVX512", "AVX512-BF16", "AMX", "DEFAULT", "ZVECTOR", "VSX")


def test_auto_precision_rule_on_each_kind_of_cpu(monkeypatch):
    monkeypatch.setattr(device_mod, "cpu_has_native", lambda precision: False)  # an AVX2-only CPU
    assert resolve_precision("auto", "cpu").name == "fp32"
    assert "emulated" in resolve_precision("bf16", "cpu").reason
    monkeypatch.setattr(device_mod, "cpu_has_native", lambda precision: precision == "bf16")  # AVX512-BF16
    assert resolve_precision("auto", "cpu").name == "bf16"
    assert resolve_precision("auto", torch.device("cuda")).name == "fp16"
    assert resolve_precision("int8", "cpu").name == "int8"  # explicit only: auto never picks it
    with pytest.raises(ConfigError, match="unknown precision"):
        resolve_precision("fp8", "cpu")


def test_predictor_reports_what_auto_picked():
    from lighthmr_ros.inference import Predictor

    pred = Predictor(config="lighthmr_tinyvit5m", body_model="anny", image_size=64, device="cpu", precision="auto")
    assert pred.precision == resolve_precision("auto", "cpu").name
    assert pred.precision_reason.startswith("auto -> ")
    assert isinstance(pred.predict(np.zeros((40, 60, 3), np.uint8), det_threshold=0.0, max_humans=1), list)
    fp32 = Predictor(checkpoint=pred.model, device="cpu")
    assert fp32.precision == "fp32" and "as requested" in fp32.precision_reason
