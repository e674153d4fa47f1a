"""ONNX export and the onnxruntime backend: same outputs as torch eager within onnx_backend.TOLERANCE."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lighthmr_ros.errors import ConfigError

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def small_student(model_smplx_dir):
    """Seeded untrained student at 224 px with the synthetic SMPL-X body (small and quick to export)."""
    from lighthmr_ros.model import create_model

    torch.manual_seed(1)
    return create_model(
        "lighthmr_tinyvit5m", body_model="smplx", smplx_model_dir=model_smplx_dir, image_size=224
    ).eval()


@pytest.fixture(scope="module")
def exported(small_student, tmp_path_factory):
    from lighthmr_ros.onnx_export import export_onnx

    return export_onnx(small_student, tmp_path_factory.mktemp("onnx") / "student")


@pytest.mark.slow
def test_onnxruntime_matches_torch(small_student, exported):
    from lighthmr_ros.onnx_backend import TOLERANCE, compare_backends

    diffs = compare_backends(small_student, exported, persons=3)
    for key, tol in TOLERANCE.items():
        assert diffs[key] <= tol, f"{key}: onnxruntime differs from torch by {diffs[key]:.3g} (tolerance {tol})"


@pytest.mark.slow
def test_decoder_graph_takes_any_number_of_people(small_student, exported):
    """One graph serves 1 and 5 people (dynamic axis), matching the torch decoder."""
    import onnxruntime as ort

    from lighthmr_ros.onnx_export import DECODER_FILE

    sess = ort.InferenceSession(str(exported / DECODER_FILE), providers=["CPUExecutionProvider"])
    grid = small_student.config.grid
    tokens = torch.randn(1, grid * grid, small_student.backbone.embed_dim)
    K = torch.tensor([[[180.0, 0.0, 112.0], [0.0, 180.0, 112.0], [0.0, 0.0, 1.0]]])
    with torch.inference_mode():
        camera = small_student.camera(small_student.camera_rays(K, (grid, grid)))
        for index in (torch.tensor([17]), torch.tensor([0, 9, 50, 101, grid * grid - 1])):
            outs = dict(
                zip(
                    [o.name for o in sess.get_outputs()],
                    sess.run(None, {"tokens": tokens.numpy(), "camera": camera.numpy(), "index": index.numpy()}),
                    strict=False,
                )
            )
            b = torch.zeros_like(index)
            rows, cols = index // grid, index % grid
            context = torch.cat([tokens, camera], dim=-1)
            ref = small_student.x_attention_head(context[b, index], context, b, rows, cols)
            assert outs["shape"].shape == (len(index), small_student.body.spec.num_shape)
            np.testing.assert_allclose(outs["shape"], ref["shape"].numpy(), atol=1e-4)
            np.testing.assert_allclose(outs["cam"], ref["cam"].numpy(), atol=1e-4)
            np.testing.assert_allclose(outs["offset"], small_student.mlp_offset(tokens[0, index]).numpy(), atol=1e-4)


@pytest.mark.slow
def test_predictor_onnxruntime_backend_from_exported_checkpoint(small_student, model_smplx_dir, tmp_path, capsys):
    """`lighthmr export` of a checkpoint, then Predictor(backend='onnxruntime') gives torch's Humans."""
    from lighthmr_ros.cli import main
    from lighthmr_ros.inference import Predictor
    from lighthmr_ros.model.checkpoint import save_checkpoint

    ckpt = save_checkpoint(tmp_path / "student.pt", small_student, provenance={"test": "onnx"})
    out = tmp_path / "onnx"
    assert (
        main(["export", "--onnx", str(out), "--checkpoint", str(ckpt), "--smplx-model-dir", str(model_smplx_dir)]) == 0
    )
    printed = capsys.readouterr().out
    assert "max abs difference" in printed
    rgb = np.random.default_rng(0).integers(0, 255, size=(120, 200, 3), dtype=np.uint8)
    ref = Predictor(ckpt, device="cpu", smplx_model_dir=model_smplx_dir).predict(rgb, det_threshold=0.0, max_humans=2)
    ort_pred = Predictor(ckpt, device="cpu", smplx_model_dir=model_smplx_dir, backend="onnxruntime", onnx_dir=out)
    got = ort_pred.predict(rgb, det_threshold=0.0, max_humans=2)
    assert len(got) == len(ref) == 2
    for a, b in zip(ref, got, strict=False):
        np.testing.assert_allclose(a.vertices, b.vertices, atol=1e-4)
        np.testing.assert_allclose(a.joints_2d, b.joints_2d, atol=1e-2)
        np.testing.assert_allclose(a.pose, b.pose, atol=1e-3)
    assert ort_pred.predict(np.zeros((64, 64, 3), np.uint8), det_threshold=1.0) == []  # nobody: no decoder call


@pytest.mark.slow
def test_export_refuses_other_weights_and_non_exports(small_student, exported, model_smplx_dir, tmp_path):
    from lighthmr_ros.model import create_model
    from lighthmr_ros.onnx_backend import OnnxHMR

    torch.manual_seed(2)
    other = create_model(
        "lighthmr_tinyvit5m", body_model="smplx", smplx_model_dir=model_smplx_dir, image_size=224
    ).eval()
    with pytest.raises(ConfigError, match="other weights"):
        OnnxHMR(other, exported)
    with pytest.raises(ConfigError, match="not a lighthmr ONNX export"):
        OnnxHMR(small_student, tmp_path)


def test_unknown_backend_is_a_config_error(model_smplx_dir):
    from lighthmr_ros.inference import Predictor

    with pytest.raises(ConfigError, match="backend"):
        Predictor(
            config="lighthmr_tinyvit5m",
            body_model="smplx",
            smplx_model_dir=model_smplx_dir,
            image_size=64,
            device="cpu",
            backend="tensorrt",
        )


def test_int8_needs_the_onnxruntime_backend_and_int8_graphs(small_student, exported, model_smplx_dir):
    from lighthmr_ros.inference import Predictor
    from lighthmr_ros.onnx_backend import OnnxHMR

    with pytest.raises(ConfigError, match="onnxruntime backend only"):
        Predictor(
            config="lighthmr_tinyvit5m",
            body_model="smplx",
            smplx_model_dir=model_smplx_dir,
            image_size=64,
            device="cpu",
            precision="int8",
        )
    with pytest.raises(ConfigError, match="fp32 or int8"):
        OnnxHMR(small_student, exported, precision="fp16")
    with pytest.raises(ConfigError, match="no int8 graphs.*--int8"):
        OnnxHMR(small_student, exported, precision="int8")


@pytest.mark.slow
def test_corrupt_graph_is_a_config_error(small_student, exported, tmp_path):
    import shutil

    from lighthmr_ros.onnx_backend import OnnxHMR
    from lighthmr_ros.onnx_export import ENCODER_FILE

    broken = tmp_path / "broken"
    shutil.copytree(exported, broken)
    (broken / ENCODER_FILE).write_bytes((exported / ENCODER_FILE).read_bytes()[:5000])
    with pytest.raises(ConfigError, match="cannot load.*re-export"):
        OnnxHMR(small_student, broken)


@pytest.mark.slow
def test_int8_backend_runs_and_stays_close(small_student, tmp_path):
    """int8 graphs exported on the fly: same people found, outputs approximate (not within TOLERANCE)."""
    from lighthmr_ros.onnx_backend import OnnxHMR
    from lighthmr_ros.onnx_export import export_onnx, read_meta

    out = export_onnx(small_student, tmp_path / "q", int8=True)
    assert read_meta(out)["int8"] == {"encoder.onnx": "encoder.int8.onnx", "decoder.onnx": "decoder.int8.onnx"}
    images = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    K = torch.tensor([[180.0, 0.0, 112.0], [0.0, 180.0, 112.0], [0.0, 0.0, 1.0]]).expand(2, 3, 3)
    with torch.inference_mode():
        ref = small_student(images, K, det_threshold=0.0, max_humans=3)
    runner = OnnxHMR(small_student, out, precision="int8")
    got = runner(images, K, det_threshold=0.0, max_humans=3)
    # random weights give a nearly flat score map, so int8 noise may reorder its peaks: compare the
    # maps and the shapes here; accuracy is checked on the trained default model (test_default_model.py)
    assert len(got) == len(ref) == 6 and torch.equal(got.batch_index, ref.batch_index)
    assert float((got.score_map - ref.score_map).abs().max()) < 0.05
    assert got.vertices.shape == ref.vertices.shape and bool(torch.isfinite(got.vertices).all())
    export_onnx(small_student, out)  # re-export without int8: stale int8 graphs are removed
    assert read_meta(out)["int8"] == {} and not (out / "encoder.int8.onnx").exists()


def test_fingerprint_ignores_batchnorm_folding(small_student):
    """A checkpoint as loaded and the Predictor's folded copy of it are the same weights."""
    import copy

    from lighthmr_ros.onnx_export import weights_fingerprint
    from lighthmr_ros.perf import optimize_for_inference

    folded = copy.deepcopy(small_student)
    optimize_for_inference(folded)
    assert weights_fingerprint(folded) == weights_fingerprint(small_student)
