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
    model = create_model("lighthmr_tinyvit5m", body_model="smplx", smplx_model_dir=model_smplx_dir, image_size=224).eval()
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

    pred = Predictor(config="lighthmr_tinyvit5m", body_model="smplx", smplx_model_dir=model_smplx_dir, image_size=64, device="cpu")
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
