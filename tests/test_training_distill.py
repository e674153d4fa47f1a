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
    cfg = load_config(
        config_path("fixture_tiny"),
        [
            f"run.output_dir={out}",
            "run.max_steps=2",
            "model.image_size=64",
            "teacher.name=multihmr_vitb14",
            "teacher.image_size=112",
            "teacher.features=true",
            "teacher.teacher_locations=true",
            "teacher.smplx_model_dir=${LIGHTHMR_FIXTURE_SMPLX}",
        ],
    )
    summary = train(cfg, distill=True)
    assert summary["step"] == 2
    with open(out / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert all(float(r["kd_features"]) > 0 for r in rows)
    state = torch.load(out / "checkpoints" / "last.pt", weights_only=True)["weights"]
    assert tuple(state["projector.weight"].shape) == (
        768,
        384,
    )  # student 384 -> teacher 768, saved and resumable


def _tiny_batch(bedlam_root, size, teacher_size):
    from lighthmr_ros.training.datasets import TrainingDataset, create_dataset
    from lighthmr_ros.training.targets import AugmentConfig, collate

    reader = create_dataset("bedlam", bedlam_root[0], split="train")
    ds = TrainingDataset(reader, size, AugmentConfig(enabled=False), teacher_size=teacher_size)
    return collate([ds[0], ds[1]], size)


def test_one_teacher_pass_per_step_on_the_teachers_own_view(bedlam_root, smplx_model_dir):
    from lighthmr_ros.model import create_model
    from lighthmr_ros.training.distill import Distiller, TeacherConfig
    from lighthmr_ros.training.targets import token_locations

    student = create_model("lighthmr_tinyvit5m", smplx_model_dir=smplx_model_dir, image_size=64)
    cfg = TeacherConfig(
        name="multihmr_vits14",
        image_size=112,
        smplx_model_dir=str(smplx_model_dir),
        features=True,
        teacher_locations=True,
        det_threshold=0.0,
        max_people=3,
    )
    distiller = Distiller(cfg, student, torch.device("cpu"))
    seen = []
    distiller.teacher.backbone.register_forward_hook(lambda m, args, out: seen.append(tuple(args[0].shape)))
    batch = _tiny_batch(bedlam_root, 64, 112)
    grid = (student.config.grid, student.config.grid)
    locs, keep, _ = token_locations(batch["center"], batch["batch_index"], 2, grid, 64)
    t, extra = distiller.teach(batch, batch["center"][keep], batch["batch_index"][keep], grid, 64, locs)
    assert seen == [(2, 3, 112, 112)]  # one encoder pass, on the 112-px views made from the original pixels
    assert all(len(e) <= 3 and not set(e.tolist()) & set(locs[b].tolist()) for b, e in enumerate(extra))
    assert len(t["joints"]) == int(keep.sum()) + sum(len(e) for e in extra)  # GT rows, then pseudo-label rows
    assert t["tokens"].shape == (2, grid[0] * grid[1], 384) and t["scores"].shape == (2, grid[0] * grid[1])


def test_teacher_cache_size_is_stated_and_bounded(bedlam_root, smplx_model_dir, tmp_path):
    from lighthmr_ros.model import create_model
    from lighthmr_ros.training.distill import Distiller, TeacherConfig, entry_bytes

    student = create_model("lighthmr_tinyvit5m", smplx_model_dir=smplx_model_dir, image_size=64)
    cfg = TeacherConfig(
        name="multihmr_vits14",
        image_size=112,
        smplx_model_dir=str(smplx_model_dir),
        features=True,
        cache_dir=str(tmp_path / "cache"),
        cache_max_gb=1.0,
    )
    distiller = Distiller(cfg, student, torch.device("cpu"))
    # BEDLAM-sized at 448 px: 28x28 student cells x ViT-L width in fp16 -> about 1.6 MB an entry
    assert entry_bytes((28, 28), 1024, True) == pytest.approx(1.6e6, rel=0.05)
    assert distiller.check_cache(1000, (4, 4), augment_per_epoch=False) == 1000 * entry_bytes(
        (4, 4), 384, True
    )
    with pytest.raises(ConfigError, match="over teacher.cache_max_gb"):
        distiller.check_cache(10**6, (28, 28), augment_per_epoch=False)
    with pytest.raises(ConfigError, match="never hit"):
        distiller.check_cache(10, (4, 4), augment_per_epoch=True)
