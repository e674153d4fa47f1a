"""Checkpoint io: our self-describing files and official Multi-HMR files, and their failures."""
from __future__ import annotations

import argparse
import datetime

import numpy as np
import pytest
import torch

from lighthmr_ros.errors import CheckpointError
from lighthmr_ros.model.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint


def _images(n=1, size=448, seed=0):
    g = torch.Generator().manual_seed(seed)
    K = torch.tensor([[400.0, 0, size / 2], [0, 400.0, size / 2], [0, 0, 1]]).expand(n, 3, 3)
    return torch.randn(n, 3, size, size, generator=g), K


@pytest.fixture(scope="module")
def student_file(tmp_path_factory, student_smplx):
    path = tmp_path_factory.mktemp("ckpt") / "student.pt"
    save_checkpoint(path, student_smplx, provenance={"run": "unit-test", "step": 3, "when": datetime.date(2026, 1, 1)})
    return path


@pytest.mark.slow
def test_roundtrip_same_outputs(student_file, student_smplx, model_smplx_dir):
    payload = read_checkpoint(student_file)
    assert payload["format"] == "lighthmr_ros.checkpoint" and payload["body_model"] == "smplx"
    assert payload["config"]["name"] == "lighthmr_tinyvit5m"
    assert payload["provenance"] == {"run": "unit-test", "step": 3, "when": "2026-01-01"}
    # Body-model data (licensed SMPL-X arrays) never goes into our checkpoints.
    assert not any(k.startswith("body_model.") for k in payload["state_dict"])
    model = load_checkpoint(student_file, smplx_model_dir=model_smplx_dir)
    assert model.checkpoint_info["kind"] == "lighthmr" and not model.training
    x, K = _images()
    with torch.inference_mode():
        a = student_smplx(x, K, det_threshold=0.0, max_humans=3)
        b = model(x, K, det_threshold=0.0, max_humans=3)
    assert len(a) == len(b) == 3
    assert torch.equal(a.vertices, b.vertices)


def test_fp16_checkpoint(tmp_path, student_smplx, model_smplx_dir):
    path = save_checkpoint(tmp_path / "half.pt", student_smplx, provenance={}, half=True)
    payload = read_checkpoint(path)
    assert payload["dtype"] == "fp16"
    assert all(v.dtype == torch.float16 for v in payload["state_dict"].values() if v.is_floating_point())
    model = load_checkpoint(path, smplx_model_dir=model_smplx_dir)
    ref = student_smplx.state_dict()["x_attention_head.decpose.weight"]
    got = model.state_dict()["x_attention_head.decpose.weight"]
    assert got.dtype == torch.float32 and torch.allclose(got, ref, atol=1e-3)


def test_missing_truncated_and_foreign_files(tmp_path, student_file, model_smplx_dir):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    cut = tmp_path / "cut.pt"
    cut.write_bytes(student_file.read_bytes()[: 1_000_000])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(cut)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(CheckpointError, match="truncated or not a PyTorch file"):
        load_checkpoint(junk)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(CheckpointError, match="neither a lighthmr nor a Multi-HMR"):
        load_checkpoint(other)
    # Any pickled object besides argparse.Namespace is refused, never executed.
    evil = tmp_path / "evil.pt"
    torch.save({"model_state_dict": {}, "args": argparse.Namespace(), "when": datetime.datetime(2024, 1, 1)}, evil)
    with pytest.raises(CheckpointError, match="other than tensors and argparse.Namespace"):
        load_checkpoint(evil)


def test_mismatched_weights_one_sentence(tmp_path, student_file, model_smplx_dir):
    payload = torch.load(student_file, weights_only=True)
    payload["config"]["hph_depth"] = 2  # the weights have 4 layers
    bad = tmp_path / "bad.pt"
    torch.save(payload, bad)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(bad, smplx_model_dir=model_smplx_dir)
    msg = str(err.value)
    assert "does not fit" in msg and "unexpected" in msg and msg.count("\n") == 0
    payload["config"]["hph_depth"] = 4
    payload["state_dict"]["x_attention_head.decshape.weight"] = torch.zeros(3, 384)
    torch.save(payload, bad)
    with pytest.raises(CheckpointError, match="of another shape"):
        load_checkpoint(bad, smplx_model_dir=model_smplx_dir)


def _official_file(path, reference_dir, with_body=True):
    state = torch.load(reference_dir / "state_dict_fp16.pt", map_location="cpu", weights_only=True)
    if not with_body:
        state = {k: v for k, v in state.items() if not k.startswith("smpl_layer.")}
    args = argparse.Namespace(  # argument names of upstream train.py / Model
        backbone="dinov2_vits14", img_size=[448], xat_depth=2, xat_num_heads=8, num_betas=10, person_center="head",
        train_return_type="smplx", camera_embedding="geometric", camera_embedding_num_bands=16,
        camera_embedding_max_resolution=64, nearness=True, clip_dist=True, det_thresh=0.2, nms_kernel_size=3,
        learning_rate=5e-6, batch_size=2, name="trainval",
    )
    torch.save({"epoch": 0, "iter": 0, "model_state_dict": state, "args": args}, path)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("with_body", [True, False])
def test_official_checkpoint_loads_and_reproduces(tmp_path, reference_dir, reference_cases, with_body):
    path = _official_file(tmp_path / "multiHMR_448_S.pt", reference_dir, with_body)
    model = load_checkpoint(path, smplx_model_dir=reference_dir)
    assert model.checkpoint_info["kind"] == "multihmr"
    assert model.config.name == "multihmr_vits14" and model.config.image_size == 448 and model.config.hph_depth == 2
    c = reference_cases["A"]
    with torch.inference_mode():
        det = model(torch.from_numpy(c["input_image"]), torch.from_numpy(c["K"]), det_threshold=0.65, nms_kernel=3)
    assert len(det) == int(c["n_persons"])
    ref = torch.from_numpy(c["out_v3d"])
    assert float((det.vertices - ref).abs().max() / ref.abs().max()) < 1e-4


@pytest.mark.slow
def test_official_checkpoint_needs_smplx_files(tmp_path, reference_dir):
    from lighthmr_ros.errors import BodyModelError

    path = _official_file(tmp_path / "official.pt", reference_dir, with_body=False)
    with pytest.raises(BodyModelError, match="SMPLX_NEUTRAL.npz"):
        load_checkpoint(path)
    payload = torch.load(path, weights_only=False)
    payload["args"].backbone = "dinov2_vitl14"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="inconsistent"):
        load_checkpoint(path, smplx_model_dir=reference_dir)
