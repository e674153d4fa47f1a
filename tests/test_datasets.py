"""Readers of the real BEDLAM / 3DPW / AGORA formats on small written fixtures, and target consistency."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from lighthmr_ros.errors import DatasetError
from lighthmr_ros.training.datasets import create_dataset
from lighthmr_ros.training.targets import (
    SMPLX_FLIP,
    AugmentConfig,
    collate,
    flip_sample,
    prepare_sample,
    project_points,
    token_locations,
)


def _bright_at(image: np.ndarray, points: np.ndarray, radius: int = 1) -> np.ndarray:
    """For each point inside the image: is there a non-background pixel within ``radius``?"""
    h, w = image.shape[:2]
    out = []
    for x, y in points:
        xi, yi = int(round(x)), int(round(y))
        if not (0 <= xi < w and 0 <= yi < h):
            continue
        patch = image[max(0, yi - radius) : yi + radius + 1, max(0, xi - radius) : xi + radius + 1]
        out.append(patch.max() > 60)
    return np.array(out)


def _rot(v):
    return cv2.Rodrigues(np.asarray(v, np.float64).reshape(3))[0]


def test_bedlam_reader_matches_truth(bedlam_root):
    root, truth = bedlam_root
    ds = create_dataset("bedlam", root, split="train")
    assert len(ds) == 3
    names = {ds[i].name for i in range(len(ds))}
    assert names == set(truth)
    for i in range(len(ds)):
        s = ds[i]
        t = truth[s.name]
        assert s.image.shape[:2] == t["image"].shape[:2]  # closeup turned back to portrait
        np.testing.assert_allclose(s.K, t["K"])
        assert len(s.persons) == len(t["people"])
        for p, q in zip(s.persons, t["people"], strict=False):
            np.testing.assert_allclose(p.joints_2d, project_points(q["joints"], t["K"]), atol=1e-6)
            np.testing.assert_allclose(p.transl, q["pelvis"], atol=1e-9)  # trans_cam + cam_ext[:3,3]
            np.testing.assert_allclose(_rot(p.rotvec[0]), q["R_go"], atol=1e-9)
            assert _bright_at(s.image, p.joints_2d[:22]).all()
    assert len(create_dataset("bedlam", root, split="validation")) == 3


def test_bedlam_closeup_is_rotated_clockwise(bedlam_root):
    root, truth = bedlam_root
    ds = create_dataset("bedlam", root, split="train")
    s = next(ds[i] for i in range(len(ds)) if "closeup" in ds[i].name)
    assert s.image.shape[:2] == (1280, 720)
    np.testing.assert_array_equal(s.image, truth[s.name]["image"])


def test_threedpw_reader(threedpw_root):
    root, truth = threedpw_root
    ds = create_dataset("3dpw", root, split="test")
    assert len(ds) == 3
    counts = [len(ds[i].persons) for i in range(3)]
    assert counts == [2, 2, 1]  # actor 1 has campose_valid 0 in the last frame
    for i in range(3):
        s = ds[i]
        t = truth[s.name]
        assert s.image.shape[:2] == (960, 540)
        for p, q in zip(s.persons, t["people"], strict=False):
            assert p.body == "smpl" and p.shape is None and p.transl is None
            assert p.rot_valid[:22].all() and not p.rot_valid[22:].any()
            np.testing.assert_allclose(p.joints_3d, q["joints"][:22], atol=1e-9)
            np.testing.assert_allclose(_rot(p.rotvec[0]), q["R_go"], atol=1e-9)  # world -> camera
            assert _bright_at(s.image, p.joints_2d, radius=2).all()
        assert s.extras["smpl"][0]["betas"].shape == (10,)


def test_agora_reader(agora_root):
    root, truth = agora_root
    ds = create_dataset("agora", root, split="validation")
    assert len(ds) == 2
    for i in range(2):
        s = ds[i]
        t = truth[s.name]
        np.testing.assert_allclose(s.K, t["K"])
        assert [p.valid for p in s.persons] == [True, True, False]
        for p, q in zip(s.persons, t["people"], strict=False):
            np.testing.assert_allclose(
                p.joints_2d, project_points(q["joints"], t["K"]), atol=1e-6
            )  # 4K px / 3
            np.testing.assert_allclose(p.joints_3d, q["joints"], atol=1e-9)
            np.testing.assert_allclose(_rot(p.rotvec[0]), q["R_go"], atol=1e-9)  # fit frame -> camera
            assert p.rot_valid[:25].all() and not p.rot_valid[25:].any()
            assert p.shape is None and p.vertices.shape == (64, 3)
            assert _bright_at(s.image, p.joints_2d[:22]).all()


def test_bad_root_is_dataset_error(tmp_path):
    with pytest.raises(DatasetError):
        create_dataset("bedlam", tmp_path / "missing")
    with pytest.raises(DatasetError):
        create_dataset("3dpw", tmp_path)
    with pytest.raises(DatasetError):
        create_dataset("nope", tmp_path)


@pytest.mark.parametrize("which", ["bedlam", "3dpw", "agora"])
def test_augmented_targets_stay_on_people(which, bedlam_root, threedpw_root, agora_root):
    root = {"bedlam": bedlam_root, "3dpw": threedpw_root, "agora": agora_root}[which][0]
    split = {"bedlam": "train", "3dpw": "test", "agora": "validation"}[which]
    ds = create_dataset(which, root, split=split)
    aug = AugmentConfig(scale=(0.9, 1.3), shift=0.05, flip=0.5, color=0.0)
    for seed in range(6):
        rng = np.random.default_rng(seed)
        s = prepare_sample(ds[seed % len(ds)], 224, aug, rng)
        assert s.image.shape == (224, 224, 3)
        for p in s.persons:
            assert _bright_at(s.image, p.joints_2d[:22], radius=1).all()
            if p.joints_3d is not None:  # K, 3-D and 2-D joints moved together (incl. the flip)
                np.testing.assert_allclose(project_points(p.joints_3d, s.K), p.joints_2d, atol=1e-6)


def test_flip_swaps_sides_and_mirrors_rotations(threedpw_root):
    root, _ = threedpw_root
    s = prepare_sample(create_dataset("3dpw", root, split="test")[0], 224)
    f = flip_sample(s)
    M = np.diag([-1.0, 1.0, 1.0])
    for p, q in zip(s.persons, f.persons, strict=False):
        # left hip of the flipped person is the mirrored right hip of the original
        np.testing.assert_allclose(q.joints_3d[1], p.joints_3d[2] * [-1, 1, 1])
        np.testing.assert_allclose(q.joints_2d[1, 0], 223 - p.joints_2d[2, 0])
        for j in range(22):
            np.testing.assert_allclose(_rot(q.rotvec[j]), M @ _rot(p.rotvec[SMPLX_FLIP[j]]) @ M, atol=1e-9)
        np.testing.assert_allclose(project_points(q.joints_3d, f.K), q.joints_2d, atol=1e-6)
        assert _bright_at(f.image, q.joints_2d).all()
    ff = flip_sample(f)
    np.testing.assert_array_equal(ff.image, s.image)
    np.testing.assert_allclose(ff.persons[0].rotvec, s.persons[0].rotvec)


def test_collate_and_token_locations(bedlam_root):
    root, _ = bedlam_root
    ds = create_dataset("bedlam", root, split="train")
    samples = [prepare_sample(ds[i], 224) for i in range(2)]
    batch = collate(samples, 224)
    assert batch["images"].shape == (2, 3, 224, 224)
    P = sum(len(s.persons) for s in samples)
    assert batch["center"].shape == (P, 2) and batch["rotvec"].shape == (P, 55, 3)
    assert batch["has_rotvec"].all() and batch["has_shape"].all() and batch["shape"].shape[1] == 11
    locs, keep, offset = token_locations(batch["center"], batch["batch_index"], 2, (14, 14), 224)
    assert keep.all() and sum(len(loc) for loc in locs) == P
    # token centre + offset gives back the centre pixel (model: loc = (cell + 0.5 + offset) * stride)
    n = locs[0]
    rebuilt = (np.stack([n % 14, n // 14], -1) + 0.5 + offset[: len(n)].numpy()) * 16
    np.testing.assert_allclose(rebuilt, batch["center"][: len(n)].numpy(), atol=1e-4)


@pytest.mark.parametrize("zoom", [1.0, 0.5, 3.0])
def test_warp_moves_image_content_exactly_like_the_points(zoom):
    from lighthmr_ros.preprocess import letterbox
    from lighthmr_ros.training.targets import PersonTarget, Sample, letterbox_affine, warp_sample

    image = np.zeros((720, 1280, 3), np.uint8)
    image[296:305, 700:709] = 255  # a 9x9 square centred on pixel (704, 300)
    sample = Sample(image=image, K=np.eye(3), persons=[PersonTarget(center=np.array([704.0, 300.0]))])
    A = letterbox_affine(letterbox(image, 224)[1])
    A = np.array([[zoom, 0, 112 - zoom * 112], [0, zoom, 112 - zoom * 112]]) @ np.vstack([A, [0, 0, 1]])
    out = warp_sample(sample, A, 224)
    grey = out.image[..., 0].astype(np.float64)
    ys, xs = np.nonzero(grey)
    w = grey[ys, xs]
    centroid = np.array([(xs * w).sum() / w.sum(), (ys * w).sum() / w.sum()])
    np.testing.assert_allclose(centroid, out.persons[0].center, atol=0.25)
    np.testing.assert_allclose(out.K[:2, 2], A[:, 2])


def test_agora_holds_no_dataframe_and_maps_its_arrays(agora_root):
    import pandas as pd

    ds = create_dataset("agora", agora_root[0], split="validation")
    rows, arrays = ds._frames[0]
    assert all(isinstance(a, np.memmap) for a in arrays.values()) and set(arrays) == {
        "joints_2d",
        "joints_3d",
        "vertices",
    }
    assert arrays["vertices"].dtype == np.float32 and arrays["vertices"].shape == (6, 64, 3)
    assert not any(isinstance(v, pd.DataFrame) for v in vars(ds).values())
    again = create_dataset("agora", agora_root[0], split="validation")  # second process: reads the cache
    np.testing.assert_array_equal(again[1].persons[2].vertices, ds[1].persons[2].vertices)


def test_agora_missing_fits_warn_once_with_counts(agora_root, tmp_path, caplog):
    import shutil

    root = tmp_path / "agora"
    shutil.copytree(agora_root[0], root, ignore=shutil.ignore_patterns(".lighthmr_cache"))
    fits = sorted(root.rglob("fixture_*.pkl"))
    fits[0].unlink()
    with caplog.at_level("WARNING"):
        ds = create_dataset("agora", root, split="validation")
    warnings = [r.message for r in caplog.records if "no SMPL-X fit" in r.message]
    assert len(warnings) == 1 and "1 of 6 people" in warnings[0]
    people = [p for i in range(len(ds)) for p in ds[i].persons]
    assert sum(p.rotvec is None for p in people) == 1 and all(p.joints_3d is not None for p in people)


def test_invalid_people_are_neither_positives_nor_negatives():
    from lighthmr_ros.training.losses import focal_loss
    from lighthmr_ros.training.targets import ignored_cells

    center = torch.tensor([[10.0, 10.0], [100.0, 100.0]])  # 16 px cells on 128 px: cells 0 and 6*8+6
    bidx, valid = torch.tensor([0, 0]), torch.tensor([True, False])
    locs, keep, _ = token_locations(center, bidx, 1, (8, 8), 128, valid)
    assert keep.tolist() == [True, False] and locs[0].tolist() == [0]
    ignore = ignored_cells(center, bidx, valid, 1, (8, 8), 128)
    assert ignore.sum() == 1 and bool(ignore[0, 54])
    logits, target = torch.full((1, 64), -5.0), torch.zeros(1, 64)
    logits[0, 54] = 5.0  # confident on the invalid person: no penalty
    target[0, 0], logits[0, 0] = 1.0, 5.0
    assert float(focal_loss(logits, target, ignore=ignore)) < 0.01 < float(focal_loss(logits, target))


def test_training_and_inference_letterbox_identically(student_small):
    """The same image and K through training's prepare_sample/collate and the Predictor's prepare."""
    from lighthmr_ros.inference import Predictor
    from lighthmr_ros.training.targets import PersonTarget, Sample

    rng = np.random.default_rng(0)
    K = np.array([[700.0, 0, 300.0], [0, 700.0, 250.0], [0, 0, 1]])
    predictor = Predictor(student_small, device="cpu", precision="fp32")
    size = predictor.image_size
    for h, w in ((480, 640), (640, 360), (101, 333), (256, 256)):
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        sample = Sample(image=image, K=K, persons=[PersonTarget(center=np.array([w / 3, h / 2]))])
        batch = collate([prepare_sample(sample, size)], size, select=False)
        net, K_net, boxes, _ = predictor.prepare([image], [K])
        torch.testing.assert_close(batch["images"], net, atol=1e-6, rtol=0)
        torch.testing.assert_close(batch["K"], K_net, atol=1e-4, rtol=0)
        np.testing.assert_allclose(batch["center"][0].numpy(), boxes[0].to_network([w / 3, h / 2]), atol=1e-4)


def test_teacher_view_is_warped_from_the_original_pixels():
    from lighthmr_ros.training.targets import PersonTarget, Sample

    image = np.zeros((720, 1280, 3), np.uint8)
    image[296:305, 700:709] = 255
    sample = Sample(
        image=image,
        K=np.array([[900.0, 0, 640], [0, 900.0, 360], [0, 0, 1]]),
        persons=[PersonTarget(center=np.array([704.0, 300.0]))],
    )
    aug = AugmentConfig(scale=(0.8, 1.2), shift=0.1, flip=1.0, color=0.2)
    out = prepare_sample(sample, 64, aug, np.random.default_rng(3), teacher_size=112)
    timg, tK = out.extras["teacher_image"], out.extras["teacher_K"]
    assert timg.shape == (112, 112, 3)
    s = 112 / 64  # same view: K and points differ by the resize map u' = s (u + 0.5) - 0.5
    S = np.array([[s, 0, 0.5 * (s - 1)], [0, s, 0.5 * (s - 1)], [0, 0, 1]])
    np.testing.assert_allclose(tK, S @ out.K, atol=1e-9)
    grey = timg[..., 0].astype(np.float64)
    ys, xs = np.nonzero(grey > 0)
    wgt = grey[ys, xs]
    centroid = np.array([(xs * wgt).sum() / wgt.sum(), (ys * wgt).sum() / wgt.sum()])
    np.testing.assert_allclose(centroid, s * (out.persons[0].center + 0.5) - 0.5, atol=0.3)
    batch = collate([out], 64)
    assert batch["teacher_images"].shape == (1, 3, 112, 112)
