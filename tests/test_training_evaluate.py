"""The evaluation loop against an oracle predictor built from the ground truth (real SMPL-X body model)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from lighthmr_ros.model.hmr import Detections
from lighthmr_ros.training.datasets import create_dataset
from lighthmr_ros.training.evaluate import evaluate_model, format_table
from lighthmr_ros.training.supervision import build_person_targets
from lighthmr_ros.training.targets import collate, prepare_sample


class Oracle(nn.Module):
    """Returns the GT people of each image in turn (optionally moved/scaled, plus a stray detection)."""

    def __init__(self, reader, body, size, scale=1.0, shift=(0.0, 0.0, 0.0), stray=False):
        super().__init__()
        self.body, self.size = body, size
        self.config = type("Cfg", (), {"image_size": size})()
        self.queue = []
        for i in range(len(reader)):
            s = prepare_sample(reader[i], size)
            batch = collate([s], size, select=False)
            t = build_person_targets(batch, torch.ones(len(s.persons), dtype=torch.bool), body, torch.device("cpu"))
            root = t.joints[:, :1]
            joints = (t.joints - root) * scale + root + torch.tensor(shift)
            verts = (t.vertices - root) * scale + root + torch.tensor(shift)
            j2d = batch["joints_2d"]
            jj = torch.zeros(len(s.persons), body.spec.num_joints, 2)
            jj[:, : j2d.shape[1]] = j2d
            if stray:  # a detection far from everybody: a false positive
                joints, verts = torch.cat([joints, joints[:1]]), torch.cat([verts, verts[:1]])
                jj = torch.cat([jj, jj[:1] * 0.1 + 2.0])
            self.queue.append((joints, verts, jj))

    def forward(self, images, K, **kw):
        joints, verts, j2d = self.queue.pop(0)
        P = len(joints)
        z = torch.zeros
        return Detections(batch_index=z(P, dtype=torch.long), score=torch.ones(P), loc=z(P, 2), dist=z(P), transl=z(P, 3),
                          transl_pelvis=z(P, 3), rotmat=z(P, 1, 3, 3), rotvec=z(P, 1, 3), shape=z(P, 1), expression=z(P, 1),
                          vertices=verts, joints=joints, joints_2d=j2d, cells=z(P, 2, dtype=torch.long), offset=z(P, 2),
                          pred_cam=z(P, 3), score_map=z(1, 1, 1))


@pytest.fixture(scope="module")
def smplx_body(smplx_model_dir):
    from lighthmr_ros.body.smplx_model import SMPLXBody

    return SMPLXBody(smplx_model_dir)


def test_perfect_predictions_score_zero_error(bedlam_root, smplx_body):
    reader = create_dataset("bedlam", bedlam_root[0], split="train")
    res = evaluate_model(Oracle(reader, smplx_body, 224), reader, progress=False)
    assert res["num_gt"] == 8 and res["num_matched"] == 8 and res["false_positives"] == 0
    assert res["f1"] == pytest.approx(100.0)
    for k in ("mpjpe", "pa_mpjpe", "pve", "pa_pve"):
        assert res[k] == pytest.approx(0.0, abs=1e-3)
    assert "100.0" in format_table(res)


def test_scaled_predictions_only_hurt_unaligned_errors(bedlam_root, smplx_body):
    reader = create_dataset("bedlam", bedlam_root[0], split="train")
    res = evaluate_model(Oracle(reader, smplx_body, 224, scale=1.1, shift=(0.3, 0, 0), stray=True), reader, progress=False)
    assert res["pa_mpjpe"] == pytest.approx(0.0, abs=1e-2) and res["pa_pve"] == pytest.approx(0.0, abs=1e-2)
    assert res["mpjpe"] > 5.0 and res["pve"] > 5.0  # 10 % larger body: root-relative errors of centimetres
    # one stray detection per image: 8 TP, 3 FP, 0 FN
    assert res["precision"] == pytest.approx(800 / 11) and res["recall"] == pytest.approx(100.0)
    assert res["f1"] == pytest.approx(100 * 8 / (8 + 1.5))


SMPL_PARENTS = [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21]


def write_synthetic_smpl(folder, n_verts=48, seed=0):
    """SMPL_MALE/FEMALE.npz with the arrays smplx.SMPL reads (random mesh, real 24-joint tree)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    weights = rng.random((n_verts, 24))
    weights /= weights.sum(1, keepdims=True)
    J = rng.random((24, n_verts))
    J /= J.sum(1, keepdims=True)
    data = dict(v_template=rng.normal(0, 0.3, (n_verts, 3)), f=rng.integers(0, n_verts, (60, 3)),
                shapedirs=rng.normal(0, 0.01, (n_verts, 3, 10)), posedirs=rng.normal(0, 0.01, (n_verts, 3, 207)),
                J_regressor=J, weights=weights, kintree_table=np.stack([np.array(SMPL_PARENTS), np.arange(24)]))
    for g in ("MALE", "FEMALE"):
        np.savez(folder / f"SMPL_{g}.npz", **data)


class SMPLOracle(nn.Module):
    """Predicts, for each 3DPW actor, SMPL-X vertices whose first rows are the GT SMPL mesh."""

    def __init__(self, reader, body, smpl_gt, size, scale=1.0):
        super().__init__()
        self.body, self.config = body, type("Cfg", (), {"image_size": size})()
        self.queue = []
        V = body.spec.num_vertices
        for i in range(len(reader)):
            raw = reader[i]
            s = prepare_sample(raw, size)
            batch = collate([s], size, select=False)
            P = len(s.persons)
            verts, joints = torch.zeros(P, V, 3), torch.zeros(P, body.spec.num_joints, 3)
            for p in range(P):
                gv, groot = smpl_gt.vertices(raw.extras["smpl"][p])
                gv = (gv - groot) * scale + groot
                verts[p, : len(gv)] = torch.as_tensor(gv, dtype=torch.float32)
                joints[p] = torch.as_tensor(groot, dtype=torch.float32)
                joints[p, :22] = batch["joints_3d"][p, :22]
                joints[p, 0] = torch.as_tensor(groot, dtype=torch.float32)
            j2d = torch.zeros(P, body.spec.num_joints, 2)
            j2d[:, :22] = batch["joints_2d"][:, :22]
            self.queue.append((joints, verts, j2d))

    forward = Oracle.forward


def test_threedpw_pve_through_smplx2smpl(threedpw_root, smplx_body, tmp_path):
    import pickle

    from lighthmr_ros.training.evaluate import SMPLGroundTruth

    write_synthetic_smpl(tmp_path / "smpl" / "smpl")
    n_smplx = smplx_body.spec.num_vertices
    matrix = np.zeros((48, n_smplx))
    matrix[np.arange(48), np.arange(48)] = 1.0  # SMPL vertex i = SMPL-X vertex i
    with open(tmp_path / "smplx2smpl.pkl", "wb") as f:
        pickle.dump({"matrix": matrix}, f)
    smpl_gt = SMPLGroundTruth(tmp_path / "smpl", tmp_path / "smplx2smpl.pkl")
    for m in smpl_gt.models.values():  # reduced mesh: smplx's real extra-joint vertex ids taken modulo V
        sel = m.vertex_joint_selector.extra_joints_idxs
        sel.copy_(sel % 48)
    reader = create_dataset("3dpw", threedpw_root[0], split="test")
    res = evaluate_model(SMPLOracle(reader, smplx_body, smpl_gt, 224), reader, progress=False, smpl_gt=smpl_gt)
    assert res["num_matched"] == 5 and res["pve"] == pytest.approx(0.0, abs=1e-3) and res["pa_pve"] == pytest.approx(0.0, abs=1e-3)
    assert res["mpjpe"] is not None  # joints: the 22 shared joints, as without the SMPL files
    res = evaluate_model(SMPLOracle(reader, smplx_body, smpl_gt, 224, scale=0.9), reader, progress=False, smpl_gt=smpl_gt)
    assert res["pve"] > 1.0 and res["pa_pve"] == pytest.approx(0.0, abs=1e-2)
