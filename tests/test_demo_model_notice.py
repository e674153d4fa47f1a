"""The bundled synthetic-only model says what it is (one sentence pointing at `lighthmr download`)."""

from __future__ import annotations

import pytest

from lighthmr_ros import cli
from lighthmr_ros.inference import DEFAULT_CHECKPOINT
from lighthmr_ros.model.checkpoint import (
    DEMO_MODEL_NOTICE,
    checkpoint_notice,
    planned_model_notice,
    save_checkpoint,
    synthetic_only,
)

needs_default = pytest.mark.skipif(not DEFAULT_CHECKPOINT.is_file(), reason="no bundled default checkpoint")


def test_notice_sentence():
    assert DEMO_MODEL_NOTICE.startswith("synthetic demo model: not trained on real people")
    assert "lighthmr download multiHMR_672_L_anny --accept-licence" in DEMO_MODEL_NOTICE


def test_which_checkpoints_are_synthetic_only():
    synth = {"kind": "lighthmr", "provenance": {"datasets": [{"dataset": "synthetic"}]}}
    assert synthetic_only(synth)
    assert not synthetic_only(
        {"kind": "lighthmr", "provenance": {"datasets": [{"dataset": "synthetic"}, {"dataset": "3dpw"}]}}
    )
    assert not synthetic_only({"kind": "lighthmr", "provenance": {}})  # unknown training data: say nothing
    assert not synthetic_only({"kind": "multihmr_anny", "provenance": {"source": "official"}})
    assert not synthetic_only(None)


@needs_default
def test_bundled_default_is_flagged_untrained_and_named_configs_are_not():
    assert checkpoint_notice(DEFAULT_CHECKPOINT) == DEMO_MODEL_NOTICE
    assert planned_model_notice(None, None) == DEMO_MODEL_NOTICE
    assert planned_model_notice(None, "lighthmr_tinyvit5m") is None  # untrained: its own loud warning
    assert checkpoint_notice("/no/such/file.pt") is None


def test_real_data_checkpoint_has_no_notice(tmp_path, student_smplx):
    path = save_checkpoint(
        tmp_path / "real.pt", student_smplx, provenance={"datasets": [{"dataset": "bedlam"}]}
    )
    assert checkpoint_notice(path) is None
    path = save_checkpoint(
        tmp_path / "synth.pt", student_smplx, provenance={"datasets": [{"dataset": "synthetic"}]}
    )
    assert checkpoint_notice(path) == DEMO_MODEL_NOTICE


@needs_default
def test_cli_prints_one_line(tmp_path, capsys):
    rc = cli.main(["predict", str(tmp_path / "missing.png"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.splitlines()
    assert rc == 2
    assert err[0] == f"lighthmr predict: note: {DEMO_MODEL_NOTICE}"
    assert sum("synthetic demo model" in line for line in err) == 1
    rc = cli.main(
        [
            "predict",
            str(tmp_path / "missing.png"),
            "--out",
            str(tmp_path / "out"),
            "--config",
            "lighthmr_tinyvit5m",
        ]
    )
    assert "synthetic demo model" not in capsys.readouterr().err
