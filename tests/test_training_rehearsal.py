"""The scale rehearsal: every shipped stage config, as shipped, under torchrun (2 ranks, gloo), SIGKILLed and
resumed (``lighthmr rehearse``). The four configs: 2.7 min on 2 idle cores, about 6 under load."""

from __future__ import annotations

import pytest
import torch
import yaml

from lighthmr_ros.training import CONFIG_DIR
from lighthmr_ros.training.rehearsal import RehearsalOptions, overrides, rehearse

SHIPPED = ["bedlam_distill", "3dpw_finetune", "agora_finetune", "synthetic_anny"]
# what a rehearsal may change: sizes, step counts, paths (and the two per-rank resource settings)
ALLOWED = {
    "model.image_size",
    "teacher.image_size",
    "run.max_steps",
    "run.ckpt_every",
    "run.val_every",
    "run.log_every",
    "optim.warmup_steps",
    "run.output_dir",
    "run.resume",
    "model.smplx_model_dir",
    "teacher.smplx_model_dir",
    "model.init_checkpoint",
    "teacher.checkpoint",
    "teacher.cache_dir",
    "data.num_workers",
    "run.threads",
}


def test_every_config_in_the_package_is_rehearsed():
    assert sorted(SHIPPED) == sorted(p.stem for p in CONFIG_DIR.glob("*.yaml") if p.stem != "fixture_tiny")


@pytest.mark.parametrize("name", SHIPPED)
def test_rehearsal_overrides_only_sizes_steps_and_paths(name, tmp_path):
    raw = yaml.safe_load((CONFIG_DIR / f"{name}.yaml").read_text())
    paths = {k: tmp_path / k for k in ("smplx", "init", "bedlam", "3dpw", "agora", "synthetic")}
    keys = {s.split("=", 1)[0] for s in overrides(raw, paths, tmp_path / "run", RehearsalOptions())}
    data_roots = {k for k in keys if k.startswith(("data.train.", "data.val.")) and k.endswith(".root")}
    assert keys - data_roots <= ALLOWED
    if raw.get("teacher"):  # the teacher keeps its shipped architecture, width and feature distillation
        assert raw["teacher"]["name"] == "multihmr_vitl14" and raw["teacher"]["features"] is True


@pytest.mark.slow
@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_config_survives_sigkill_and_resumes(name, tmp_path):
    result = rehearse(name, tmp_path, RehearsalOptions())
    assert result.killed_at >= 3 and result.resumed_from >= 2
    assert 0 <= result.lost_steps <= result.ckpt_every  # at most one checkpoint interval lost
    assert result.final_step == result.steps and result.validation
    weights = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)[
        "weights"
    ]
    if name == "bedlam_distill":  # ViT-L width: the student's 384-wide tokens projected once to 1024
        assert result.command == "distill" and result.teacher == "multihmr_vitl14"
        assert tuple(weights["projector.weight"].shape) == (1024, 384)


def test_unknown_config_is_a_sentence(tmp_path, capsys):
    from lighthmr_ros.cli import main

    assert main(["rehearse", "no_such_stage", "--out", str(tmp_path)]) == 2
    assert "no stage config" in capsys.readouterr().err
