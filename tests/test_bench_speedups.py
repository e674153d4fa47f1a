"""Inference rewrites of lighthmr_ros.perf: same outputs, applied only to the Predictor's own models."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from lighthmr_ros.errors import ConfigError


@pytest.fixture(scope="module")
def student224(model_smplx_dir):
    from lighthmr_ros.model import create_model

    torch.manual_seed(3)
    model = create_model(
        "lighthmr_tinyvit5m", body_model="smplx", smplx_model_dir=model_smplx_dir, image_size=224
    ).eval()
    # Non-trivial BatchNorm statistics, so that a wrong fold would show.
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return model


def test_optimize_for_inference_keeps_outputs(student224):
    from lighthmr_ros.perf import optimize_for_inference

    fast = copy.deepcopy(student224)
    done = optimize_for_inference(fast)
    assert done["fused_conv_bn"] > 20 and done.get("channels_last")
    assert done["explicit_attention"] == 10  # CPU rewrites
    assert done["onednn_linears"] >= 40 or not torch.backends.mkldnn.is_available()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    images = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    K = torch.tensor([[180.0, 0.0, 112.0], [0.0, 180.0, 112.0], [0.0, 0.0, 1.0]]).expand(2, 3, 3)
    with torch.inference_mode():
        a = student224(images, K, det_threshold=0.0, max_humans=2)
        b = fast(images, K, det_threshold=0.0, max_humans=2)
    assert torch.equal(a.cells, b.cells)
    torch.testing.assert_close(b.vertices, a.vertices, atol=1e-4, rtol=0)
    torch.testing.assert_close(b.score, a.score, atol=1e-5, rtol=0)


def test_predictor_leaves_a_given_model_untouched(student224):
    from lighthmr_ros.inference import Predictor

    model = copy.deepcopy(student224)
    bns = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    pred = Predictor(model, device="cpu")
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in pred.model.modules()) == bns > 0


def test_predictor_folds_its_own_model(model_smplx_dir):
    from lighthmr_ros.inference import Predictor

    pred = Predictor(
        config="lighthmr_tinyvit5m", body_model="smplx", smplx_model_dir=model_smplx_dir, image_size=64, device="cpu"
    )
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in pred.model.modules())
    assert len(pred.predict(np.zeros((40, 60, 3), np.uint8), det_threshold=0.0, max_humans=1)) == 1


def test_build_off_main_thread_returns_and_raises():
    import threading

    from lighthmr_ros.perf import build_off_main_thread

    assert build_off_main_thread(lambda: threading.current_thread().name) == "lighthmr_build"

    def fail():
        raise ConfigError("bad config")

    with pytest.raises(ConfigError, match="bad config"):
        build_off_main_thread(fail)


def test_onednn_linear_equals_linear_and_falls_back():
    """The oneDNN layer computes F.linear (+ GELU), and plain F.linear wherever the fast op must not run."""
    from timm.layers import Mlp
    from torch.utils.flop_counter import FlopCounterMode

    from lighthmr_ros.perf.onednn import OneDNNLinear, onednn_linears

    torch.manual_seed(0)
    mlp = Mlp(24, 96, 24).eval()
    ref_mlp = copy.deepcopy(mlp)
    keys = list(mlp.state_dict())
    assert onednn_linears(mlp) == 2
    assert isinstance(mlp.fc1, OneDNNLinear) and mlp.fc1.gelu and isinstance(mlp.act, torch.nn.Identity)
    assert list(mlp.state_dict()) == keys  # same parameter names: checkpoints and fingerprints unchanged
    x = torch.randn(3, 7, 24)
    with torch.inference_mode():
        torch.testing.assert_close(mlp(x), ref_mlp(x), atol=1e-5, rtol=0)
        with FlopCounterMode(display=False) as counter:  # a dispatch mode sees the plain ops
            mlp(x)
    assert counter.get_total_flops() == 2 * 2 * 21 * 24 * 96
    # Autograd: the fallback, with gradients.
    out = mlp(x.requires_grad_())
    out.sum().backward()
    assert mlp.fc1.weight.grad is not None and x.grad is not None
    torch.testing.assert_close(out, ref_mlp(x), atol=1e-5, rtol=0)


def test_onednn_rewrite_leaves_other_mlps_alone():
    """Only timm's Mlp/NormMlp pattern takes the fused GELU (a GLU MLP splits fc1's output first)."""
    from timm.layers import GluMlp

    from lighthmr_ros.perf.onednn import onednn_linears

    glu = GluMlp(16, 64, 16, act_layer=torch.nn.GELU).eval()
    ref = copy.deepcopy(glu)
    onednn_linears(glu)
    assert not glu.fc1.gelu and not isinstance(glu.act, torch.nn.Identity)
    x = torch.randn(2, 16)
    with torch.inference_mode():
        torch.testing.assert_close(glu(x), ref(x), atol=1e-5, rtol=0)


def test_keep_freed_memory_is_process_wide_and_respects_user_tunables(tmp_path):
    """The Predictor turns it on for the CPU; a user's own glibc malloc settings win."""
    import subprocess
    import sys

    code = (
        "import numpy as np, torch\n"
        "from lighthmr_ros.inference import Predictor\n"
        "from lighthmr_ros.perf import heap_kept\n"
        "p = Predictor(config='lighthmr_tinyvit5m', image_size=64, device='cpu')\n"
        "print('KEPT', heap_kept())\n"
    )
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert "KEPT True" in out.stdout, out.stderr[-2000:]
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**env, "MALLOC_TRIM_THRESHOLD_": "131072"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "KEPT False" in out.stdout, out.stderr[-2000:]


def test_bf16_on_a_cpu_without_native_bf16_warns(model_smplx_dir, monkeypatch, caplog):
    """bf16 runs anywhere, but where the CPU lacks the instructions the Predictor says it will be slow."""
    import logging

    import lighthmr_ros.inference as inference

    monkeypatch.setattr(inference, "cpu_has_native", lambda precision: False)
    with caplog.at_level(logging.WARNING, logger="lighthmr_ros.inference"):
        pred = inference.Predictor(
            config="lighthmr_tinyvit5m",
            body_model="smplx",
            smplx_model_dir=model_smplx_dir,
            image_size=64,
            device="cpu",
            precision="bf16",
        )
    assert any("bf16 on this CPU is emulated" in r.getMessage() for r in caplog.records)
    humans = pred.predict(np.zeros((40, 60, 3), np.uint8), det_threshold=0.0, max_humans=1)
    assert len(humans) == 1 and np.isfinite(humans[0].vertices).all()
    monkeypatch.setattr(inference, "cpu_has_native", lambda precision: True)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="lighthmr_ros.inference"):
        inference.Predictor(
            config="lighthmr_tinyvit5m",
            body_model="smplx",
            smplx_model_dir=model_smplx_dir,
            image_size=64,
            device="cpu",
            precision="bf16",
        )
    assert not any("emulated" in r.getMessage() for r in caplog.records)
