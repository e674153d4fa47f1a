"""Distillation with teachers WIDER than the student (ViT-B/L: 768/1024 vs 384): the projector runs once."""
from __future__ import annotations

import csv

import pytest
import torch

from lighthmr_ros.errors import ConfigError
from lighthmr_ros.training import config_path
from lighthmr_ros.training.config import load_config
from lighthmr_ros.training.distill import feature_loss
from lighthmr_ros.training.train import train


@pytest.fixture
def fixture_env(bedlam_root, smplx_model_dir, monkeypatch):
    monkeypatch.setenv("LIGHTHMR_FIXTURE_BEDLAM", str(bedlam_root[0]))
    monkeypatch.setenv("LIGHTHMR_FIXTURE_SMPLX", str(smplx_model_dir))
    return bedlam_root[0], smplx_model_dir


def test_feature_loss_refuses_unprojected_or_twice_projected_tokens():
    teacher = torch.randn(2, 16, 768)
    assert float(feature_loss(teacher.clone(), teacher)) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ConfigError, match="exactly once"):
        feature_loss(torch.randn(2, 16, 384), teacher)


@pytest.mark.slow
def test_distillation_from_a_wider_teacher_trains_the_projector(fixture_env, tmp_path):
    """ViT-B teacher (768 wide) at a tiny size: step 1 crashed when the projector was applied twice."""
    out = tmp_path / "vitb"
    cfg = load_config(config_path("fixture_tiny"), [
        f"run.output_dir={out}", "run.max_steps=2", "model.image_size=64", "teacher.name=multihmr_vitb14",
        "teacher.image_size=112", "teacher.features=true", "teacher.teacher_locations=true",
        "teacher.smplx_model_dir=${LIGHTHMR_FIXTURE_SMPLX}"])
    summary = train(cfg, distill=True)
    assert summary["step"] == 2
    with open(out / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert all(float(r["kd_features"]) > 0 for r in rows)
    state = torch.load(out / "checkpoints" / "last.pt", weights_only=True)["weights"]
    assert tuple(state["projector.weight"].shape) == (768, 384)  # student 384 -> teacher 768, saved and resumable
