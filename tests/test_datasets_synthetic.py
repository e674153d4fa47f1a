"""The `lighthmr synth` scene reader and Anny-native supervision (slow on a machine without an Anny cache)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lighthmr_ros.training.datasets import create_dataset
from lighthmr_ros.training.supervision import build_person_targets
from lighthmr_ros.training.targets import AugmentConfig, collate, prepare_sample, project_points

pytestmark = pytest.mark.slow


def test_synthetic_reader_and_augmentation(synth_root):
    ds = create_dataset("synthetic", synth_root, split="all")
    assert len(ds) == 3
    s = ds[0]
    assert s.image.shape == (240, 320, 3) and s.persons
    for p in s.persons:
        n = p.native
        assert n["body"] == "anny" and n["rotmats"].shape[1:] == (3, 3) and n["vertices"] is not None
        np.testing.assert_allclose(project_points(n["joints"], s.K), n["joints_2d"], atol=1e-2)
    aug = AugmentConfig(scale=(0.9, 1.2), shift=0.05, flip=1.0, color=0.1)
    f = prepare_sample(s, 224, aug, np.random.default_rng(0))
    for p in f.persons:
        n = p.native
        np.testing.assert_allclose(project_points(n["joints"], f.K), n["joints_2d"], atol=1e-2)
        assert n["rotmats"] is None  # mirrored Anny bone rotations are unknown: dropped on flips
        head = list(n["joint_names"]).index("head")
        np.testing.assert_allclose(n["joints_2d"][head], p.center, atol=1.0)


def test_native_targets_rebuild_the_mesh(synth_root, anny_body):
    ds = create_dataset("synthetic", synth_root, split="all")
    s = prepare_sample(ds[0], 224)
    batch = collate([s], 224, select=False)
    t = build_person_targets(
        batch, torch.ones(len(s.persons), dtype=torch.bool), anny_body, torch.device("cpu")
    )
    assert t.rot_mask.all() and t.shape_mask.all() and t.vertices_mask.all()
    ann = torch.as_tensor(np.stack([p.native["vertices"] for p in s.persons]), dtype=torch.float32)
    torch.testing.assert_close(t.vertices, ann)
    # the Anny GT joints are the scene's joints; their head depth is the distance target
    torch.testing.assert_close(t.dist, t.joints[:, anny_body.spec.head_index, 2])
    # without stored vertices the mesh is rebuilt from rotations, phenotypes and the pelvis position
    for p in s.persons:
        p.native = {**p.native, "vertices": None}
    batch = collate([s], 224, select=False)
    t2 = build_person_targets(
        batch, torch.ones(len(s.persons), dtype=torch.bool), anny_body, torch.device("cpu")
    )
    assert t2.vertices_mask.all()
    torch.testing.assert_close(t2.vertices, ann, atol=5e-3, rtol=0)


def test_anny_student_trains_and_evaluates_on_synthetic_scenes(synth_root, tmp_path, capsys, monkeypatch):
    import json

    from lighthmr_ros.cli import main as cli_main
    from lighthmr_ros.training import config_path
    from lighthmr_ros.training.config import load_config
    from lighthmr_ros.training.train import train

    monkeypatch.setenv("LIGHTHMR_FIXTURE_BEDLAM", str(tmp_path))  # unused by this config's data
    monkeypatch.setenv("LIGHTHMR_FIXTURE_SMPLX", str(tmp_path))
    out = tmp_path / "anny"
    cfg = load_config(
        config_path("fixture_tiny"),
        [
            "model.body_model=anny",
            f"data.train=[{{dataset: synthetic, root: {synth_root}, split: all}}]",
            "data.val=[]",
            f"run.output_dir={out}",
            "run.max_steps=2",
        ],
    )
    summary = train(cfg)
    assert {"rotation", "shape", "joints_3d", "vertices", "joints_2d", "distance"} <= set(summary["losses"])
    assert all(np.isfinite(v) for v in summary["losses"].values())
    js = tmp_path / "m.json"
    assert (
        cli_main(
            [
                "evaluate",
                "--checkpoint",
                str(out / "model.pt"),
                "--dataset",
                "synthetic",
                "--root",
                str(synth_root),
                "--det-threshold",
                "0.0",
                "--device",
                "cpu",
                "--output",
                str(js),
            ]
        )
        == 0
    )
    assert "PA-PVE" in capsys.readouterr().out
    assert json.loads(js.read_text())["num_gt"] > 0
