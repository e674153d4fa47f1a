"""The training engine on the BEDLAM-format fixture: CLI, checkpoints, distillation, resume, DDP, evaluate."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lighthmr_ros.cli import main as cli_main
from lighthmr_ros.errors import ConfigError
from lighthmr_ros.training import config_path
from lighthmr_ros.training.config import load_config
from lighthmr_ros.training.train import MetricLog, train

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def fixture_env(bedlam_root, smplx_model_dir, monkeypatch):
    monkeypatch.setenv("LIGHTHMR_FIXTURE_BEDLAM", str(bedlam_root[0]))
    monkeypatch.setenv("LIGHTHMR_FIXTURE_SMPLX", str(smplx_model_dir))
    return bedlam_root[0], smplx_model_dir


def _log(path: Path) -> list[dict]:
    with open(path / "log.csv") as f:
        return list(csv.DictReader(f))


def _teacher_overrides(cache: Path | None = None) -> list[str]:
    out = [
        "teacher.name=multihmr_vits14",
        "teacher.image_size=224",
        "teacher.smplx_model_dir=${LIGHTHMR_FIXTURE_SMPLX}",
    ]
    if cache is not None:
        out.append(f"teacher.cache_dir={cache}")
    return out


def test_config_errors(fixture_env, tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="unknown key"):
        load_config(config_path("fixture_tiny"), ["run.max_stepz=3"])
    with pytest.raises(ConfigError, match="teacher"):
        train(load_config(config_path("fixture_tiny"), [f"run.output_dir={tmp_path}"]), distill=True)
    cfg = load_config(config_path("fixture_tiny"), ["run.max_steps=7", "optim.lr=0.5"])
    assert cfg.run.max_steps == 7 and cfg.optim.lr == 0.5
    assert cfg.data.train[0].root == str(fixture_env[0])
    cfg = load_config(
        config_path("fixture_tiny"), ["data.train.0.subsample=2", "data.train.0.root=${CONFIG_DIR}/x"]
    )
    assert cfg.data.train[0].subsample == 2 and cfg.data.train[0].root == str(
        config_path("fixture_tiny").resolve().parent / "x"
    )
    monkeypatch.delenv("BEDLAM_ROOT", raising=False)
    with pytest.raises(ConfigError, match="BEDLAM_ROOT"):
        load_config(
            config_path("bedlam_distill"),
            ["model.smplx_model_dir=/m", "teacher.smplx_model_dir=/m", "teacher.checkpoint=/t"],
        )
    for var in ("BEDLAM_ROOT", "PW3D_ROOT", "AGORA_ROOT", "SMPLX_DIR", "TEACHER_CKPT"):
        monkeypatch.setenv(var, str(tmp_path))
    for name in ("bedlam_distill", "3dpw_finetune", "agora_finetune"):
        cfg = load_config(config_path(name))
        assert cfg.name == name and cfg.data.train[0].root == str(tmp_path)


@pytest.mark.slow
def test_train_command_writes_a_checkpoint_the_predictor_loads(fixture_env, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli_main(["train", "fixture_tiny", "--output-dir", str(out), "--set", "run.max_steps=2"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["step"] == 2
    from lighthmr_ros.inference import Predictor
    from lighthmr_ros.model.checkpoint import load_checkpoint, read_checkpoint

    model = load_checkpoint(out / "model.pt", smplx_model_dir=fixture_env[1])
    assert model.config.image_size == 224 and model.body.spec.name == "smplx"
    assert read_checkpoint(out / "model.pt")["provenance"]["step"] == 2
    predictor = Predictor(out / "model.pt", smplx_model_dir=fixture_env[1], device="cpu")
    image = np.zeros((120, 200, 3), np.uint8)
    assert isinstance(predictor.predict(image, det_threshold=0.0, max_humans=2), list)
    assert (out / "checkpoints" / "last.pt").is_file() and (out / "config.yaml").is_file()


@pytest.mark.slow
def test_distillation_lowers_the_loss_and_caches_the_teacher(fixture_env, tmp_path):
    out, cache = tmp_path / "distill", tmp_path / "cache"
    cfg = load_config(
        config_path("fixture_tiny"),
        [
            f"run.output_dir={out}",
            "run.max_steps=10",
            "optim.warmup_steps=1",
            "data.augment_per_epoch=false",
            "teacher.features=true",
            "teacher.teacher_locations=true",
            "teacher.det_threshold=0.3",
            *_teacher_overrides(cache),
        ],
    )
    summary = train(cfg, distill=True)
    rows = _log(out)
    losses = [float(r["loss"]) for r in rows]
    assert len(losses) == 10
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3]), losses
    assert {"kd_score", "kd_rotation", "kd_joints_3d", "kd_features"} <= set(rows[-1])
    # 3 images, batches of 2 -> 2 batches an epoch; later epochs reuse the cached teacher outputs:
    # one teacher pass per image (peaks and outputs together), in the first epoch only
    assert summary["teacher_cache"]["misses"] == 3 and summary["teacher_cache"]["hits"] > 0
    assert len(list(cache.rglob("*.pt"))) == 3
    with pytest.raises(ConfigError, match="never hit"):  # a cache under per-epoch augmentation is refused
        train(
            load_config(
                config_path("fixture_tiny"),
                [
                    f"run.output_dir={tmp_path / 'x'}",
                    "teacher.features=true",
                    *_teacher_overrides(tmp_path / "cache2"),
                ],
            ),
            distill=True,
        )


@pytest.mark.slow
def test_stopped_run_resumes_on_the_same_schedule(fixture_env, tmp_path):
    base = ["run.max_steps=6", "run.ckpt_every=100", "optim.warmup_steps=2", "data.augment.enabled=true"]
    full, split = tmp_path / "full", tmp_path / "split"
    train(load_config(config_path("fixture_tiny"), base + [f"run.output_dir={full}"]))
    first = train(
        load_config(config_path("fixture_tiny"), base + [f"run.output_dir={split}", "run.stop_after=3"])
    )
    assert first["step"] == 3  # stopped mid-schedule, its last checkpoint written at the stop
    second = train(load_config(config_path("fixture_tiny"), base + [f"run.output_dir={split}"]))
    assert second["step"] == 6
    a, b = _log(full), _log(split)
    assert [r["step"] for r in b] == [str(i) for i in range(1, 7)]
    for ra, rb in zip(a, b, strict=False):
        assert float(ra["lr"]) == pytest.approx(float(rb["lr"]), rel=1e-12)
        assert float(ra["loss"]) == pytest.approx(float(rb["loss"]), rel=1e-4, abs=1e-5)
    wa = torch.load(full / "checkpoints" / "last.pt", weights_only=True)["weights"]
    wb = torch.load(split / "checkpoints" / "last.pt", weights_only=True)["weights"]
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-4, atol=1e-5)


def test_metric_log_of_a_fresh_run_moves_the_old_log_aside(tmp_path, caplog):
    old = "step,loss\n1,9.0\n2,8.0\n"
    (tmp_path / "log.csv").write_text(old)
    (tmp_path / "log.csv.1.bak").write_text("an older run\n")
    with caplog.at_level("INFO", logger="lighthmr_ros.training.train"):
        MetricLog(tmp_path, tensorboard=False, fresh=True).write(1, {"loss": 5.0})
    assert (tmp_path / "log.csv.1.bak").read_text() == "an older run\n"  # never overwritten
    assert (tmp_path / "log.csv.2.bak").read_text() == old
    assert [r["step"] for r in _log(tmp_path)] == ["1"]
    assert "moved the previous log.csv aside to log.csv.2.bak" in caplog.text
    MetricLog(tmp_path, tensorboard=False).write(2, {"loss": 4.0})  # resumed: appends
    assert [(r["step"], r["loss"]) for r in _log(tmp_path)] == [("1", "5.0"), ("2", "4.0")]
    # the TensorBoard folder of the same old run moves with its CSV, under one N free for both
    (tmp_path / "tb").mkdir()
    (tmp_path / "tb" / "events.out.tfevents.1").write_bytes(b"old run")
    with caplog.at_level("INFO", logger="lighthmr_ros.training.train"):
        MetricLog(tmp_path, tensorboard=False, fresh=True).write(1, {"loss": 3.0})
    assert (tmp_path / "tb.3.bak" / "events.out.tfevents.1").read_bytes() == b"old run"
    assert not (tmp_path / "tb").exists() and (tmp_path / "log.csv.3.bak").exists()
    assert "tb aside to tb.3.bak" in caplog.text


@pytest.mark.slow
def test_no_resume_starts_a_new_log_and_resume_appends(fixture_env, tmp_path, capsys):
    out = tmp_path / "run"
    base = ["train", "fixture_tiny", "--output-dir", str(out), "--set", "run.max_steps=2"]
    assert cli_main(base) == 0
    assert [r["step"] for r in _log(out)] == ["1", "2"]
    assert cli_main([*base, "--no-resume", "--set", "run.stop_after=1"]) == 0  # fresh run, same folder
    assert [r["step"] for r in _log(out)] == ["1"]
    with open(out / "log.csv.1.bak") as f:
        assert [r["step"] for r in csv.DictReader(f)] == ["1", "2"]
    assert cli_main(base) == 0  # resumes at step 1: appends step 2
    assert [r["step"] for r in _log(out)] == ["1", "2"]
    assert sorted(p.name for p in out.glob("log.csv*")) == ["log.csv", "log.csv.1.bak"]


@pytest.mark.slow
def test_two_process_ddp_on_cpu(fixture_env, tmp_path):
    out = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(29500 + os.getpid() % 1000),
        "-m",
        "lighthmr_ros.cli",
        "train",
        "fixture_tiny",
        "--output-dir",
        str(out),
        "--set",
        "run.max_steps=2",
        "--set",
        "run.ckpt_every=1",
        "--set",
        "run.val_every=2",
    ]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout[proc.stdout.index("{") :])["step"] == 2
    assert (out / "model.pt").is_file()
    rows = _log(out)
    assert [r["step"] for r in rows] == [
        "1",
        "2",
        "2",
    ]  # rank 0 alone writes the log (step 2: losses, validation)
    # validation ran on both ranks over halves of the 3 validation images (8 people) and was summed
    assert rows[-1]["val_bedlam_num_gt"] == "8"


@pytest.mark.slow
def test_evaluate_command_prints_the_table(fixture_env, tmp_path, capsys, threedpw_root, agora_root):
    out = tmp_path / "run"
    assert cli_main(["train", "fixture_tiny", "--output-dir", str(out), "--set", "run.max_steps=1"]) == 0
    capsys.readouterr()
    ckpt = out / "model.pt"
    for dataset, root in (("bedlam", fixture_env[0]), ("3dpw", threedpw_root[0]), ("agora", agora_root[0])):
        js = tmp_path / f"{dataset}.json"
        rc = cli_main(
            [
                "evaluate",
                "--checkpoint",
                str(ckpt),
                "--dataset",
                dataset,
                "--root",
                str(root),
                "--smplx-model-dir",
                str(fixture_env[1]),
                "--det-threshold",
                "0.0",
                "--max-humans",
                "4",
                "--device",
                "cpu",
                "--output",
                str(js),
            ]
        )
        assert rc == 0
        text = capsys.readouterr().out
        assert "PA-MPJPE" in text and "F1" in text
        res = json.loads(js.read_text())
        assert {"mpjpe", "pa_mpjpe", "pve", "pa_pve", "precision", "recall", "f1"} <= set(res)
        assert res["num_gt"] > 0
        if res["num_matched"]:
            assert res["mpjpe"] is not None and res["mpjpe"] >= res["pa_mpjpe"] >= 0
        if dataset == "bedlam" and res["num_matched"]:
            assert res["pve"] is not None  # GT mesh rebuilt from the SMPL-X parameters


@pytest.mark.slow
def test_mixed_datasets_in_one_batch(fixture_env, tmp_path, threedpw_root, agora_root):
    out = tmp_path / "mixed"
    mix = (
        f"data.train=[{{dataset: bedlam, root: {fixture_env[0]}}}, "
        f"{{dataset: 3dpw, root: {threedpw_root[0]}, split: test}},"
        f" {{dataset: agora, root: {agora_root[0]}, split: validation}}]"
    )
    summary = train(
        load_config(
            config_path("fixture_tiny"),
            [
                mix,
                f"run.output_dir={out}",
                "run.max_steps=2",
                "data.batch_size=4",
                "data.augment.enabled=true",
            ],
        )
    )
    assert summary["step"] == 2 and all(np.isfinite(v) for v in summary["losses"].values())
    assert {"rotation", "joints_3d", "vertices", "joints_2d"} <= set(summary["losses"])
