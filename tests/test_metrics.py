"""Metrics against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from lighthmr_ros.training.metrics import (
    DetectionCounts,
    MetricAccumulator,
    keypoint_box_iou,
    match_2d_greedy,
    mpjpe,
    pa_mpjpe,
    prf1,
    procrustes_align,
)


def _rot_z(deg):
    a = np.radians(deg)
    return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1.0]])


def test_procrustes_recovers_a_similarity():
    rng = np.random.default_rng(0)
    gt = rng.normal(size=(30, 3))
    pred = 2.5 * gt @ _rot_z(70).T + np.array([1.0, -2.0, 3.0])
    np.testing.assert_allclose(procrustes_align(pred, gt), gt, atol=1e-9)
    assert pa_mpjpe(pred, gt) == pytest.approx(0.0, abs=1e-6)
    assert mpjpe(pred, gt) > 1000


def test_pa_mpjpe_hand_computed():
    # centred pred x = (-1,-1/3,0),(0,2/3,0),(1,-1/3,0); gt = (-1,0,0),(0,0,0),(1,0,0):
    # x^T y = diag(2,0,0) -> R = I, s = 2 / (2 + 6/9) = 0.75, aligned = 0.75 x
    # errors: sqrt(.25^2+.25^2), 0.5, sqrt(.25^2+.25^2) -> mean (2*0.353553 + 0.5)/3 m
    gt = np.array([[-1.0, 0, 0], [0, 0, 0], [1, 0, 0]])
    pred = np.array([[-1.0, 0, 0], [0, 1, 0], [1, 0, 0]])
    np.testing.assert_allclose(
        procrustes_align(pred, gt), [[-0.75, -0.25, 0], [0, 0.5, 0], [0.75, -0.25, 0]], atol=1e-12
    )
    assert pa_mpjpe(pred, gt) == pytest.approx((2 * np.sqrt(0.125) + 0.5) / 3 * 1000, rel=1e-9)
    # MPJPE centred on joint 0: errors 0, |(1,1,0)-(1,0,0)| = 1, 0 -> 333.33 mm
    assert mpjpe(pred, gt, root=0) == pytest.approx(1000 / 3)
    # centring on the mean of joints 0 and 2 (AGORA's hip mid-point rule): errors 0, 1, 0 again
    assert mpjpe(pred, gt, root=(0, 2)) == pytest.approx(1000 / 3)


def test_procrustes_never_reflects():
    gt = np.array([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    mirrored = gt * [-1, 1, 1]
    aligned = procrustes_align(mirrored, gt)
    assert pa_mpjpe(mirrored, gt) > 1.0  # a reflection would fit exactly; a rotation cannot
    assert np.linalg.norm(aligned - gt, axis=1).mean() > 1e-3


def test_box_iou_uses_inclusive_pixels():
    a = np.array([[0.0, 0], [9, 9]])  # area 10x10 = 100 with the +1 rule
    b = np.array([[5.0, 0], [14, 9]])  # overlap x 5..9 -> 5x10 = 50
    assert keypoint_box_iou(a, b) == pytest.approx(50 / 150)


def _person(x, y, w=20.0, h=40.0):
    return np.array([[x, y], [x + w, y], [x, y + h], [x + w, y + h], [x + w / 2, y + h / 2]])


def test_greedy_matching_and_f1_on_crafted_sets():
    counts = DetectionCounts()
    # image 1: two people found (slightly off), plus a detection on empty background
    gt1 = np.stack([_person(0, 0), _person(100, 0)])
    pred1 = np.stack([_person(102, 1), _person(300, 300), _person(1, 2)])
    m, fp, miss = match_2d_greedy(pred1, gt1)
    assert sorted(m) == [(0, 1), (2, 0)] and fp == [1] and miss == []
    counts.add(len(gt1), len(miss), len(fp))
    # image 2: one person, nothing detected
    m, fp, miss = match_2d_greedy(np.zeros((0, 5, 2)), _person(0, 0)[None])
    assert m == [] and fp == [] and miss == [0]
    counts.add(1, len(miss), len(fp))
    # image 3: nearest prediction's box does not overlap: IoU gate -> false positive + miss
    m, fp, miss = match_2d_greedy(_person(60, 0)[None], _person(0, 0)[None], iou_thresh=0.05)
    assert m == [] and fp == [0] and miss == [0]
    counts.add(1, len(miss), len(fp))
    # totals: 4 gt, 2 misses, 2 false positives -> TP 2; P = R = 2/4; F1 = 2 / (2 + (2 + 2)/2) = 0.5
    precision, recall, f1 = prf1(counts)
    assert (precision, recall, f1) == pytest.approx((50.0, 50.0, 50.0))
    counts.add(2, 0, 0)  # two more perfect matches: TP 4, FP 2, FN 2 -> P = R = 4/6, F1 = 4/6
    assert prf1(counts) == pytest.approx((400 / 6, 400 / 6, 400 / 6))
    assert prf1(DetectionCounts()) == (0.0, 0.0, 0.0)


def test_greedy_matching_takes_lowest_error_first():
    # both preds overlap gt 0; pred 1 is closer, so it wins gt 0 and pred 0 goes to gt 1
    gt = np.stack([_person(0, 0), _person(15, 0)])
    pred = np.stack([_person(6, 0), _person(1, 0)])
    m, fp, miss = match_2d_greedy(pred, gt)
    assert sorted(m) == [(0, 1), (1, 0)] and fp == [] and miss == []


def test_invalid_gt_is_neither_matched_nor_missed():
    gt = np.stack([_person(0, 0), _person(100, 0)])
    pred = _person(101, 0)[None]
    m, fp, miss = match_2d_greedy(pred, gt, valid_gt=np.array([True, False]), iou_thresh=0.1)
    # pred takes the invalid gt (lowest error): it is dropped from play and the pred counts as FP
    assert m == [] and fp == [0] and miss == [0]
    m, fp, miss = match_2d_greedy(np.zeros((0, 5, 2)), gt, valid_gt=np.array([True, False]))
    assert miss == [0]


def test_accumulator_summary():
    acc = MetricAccumulator()
    acc.add_person(mpjpe=10.0, pa_mpjpe=5.0)
    acc.add_person(mpjpe=30.0, pa_mpjpe=7.0)
    acc.detection.add(2, 0, 1)
    s = acc.summary()
    assert s["mpjpe"] == 20.0 and s["pa_mpjpe"] == 6.0 and s["pve"] is None
    assert s["precision"] == pytest.approx(200 / 3) and s["recall"] == 100.0 and s["f1"] == pytest.approx(80.0)
