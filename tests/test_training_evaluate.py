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
            t = build_person_targets(
                batch, torch.ones(len(s.persons), dtype=torch.bool), body, torch.device("cpu")
            )
            root = t.joints[:, :1]
            joints = (t.joints - root) * scale + root + torch.tensor(shift)
            gv = t.vertices if t.vertices is not None else torch.zeros(len(root), body.spec.num_vertices, 3)
            verts = (gv - root) * scale + root + torch.tensor(shift)
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
        return Detections(
            batch_index=z(P, dtype=torch.long),
            score=torch.ones(P),
            loc=z(P, 2),
            dist=z(P),
            transl=z(P, 3),
            transl_pelvis=z(P, 3),
            rotmat=z(P, 1, 3, 3),
            rotvec=z(P, 1, 3),
            shape=z(P, 1),
            expression=z(P, 1),
            vertices=verts,
            joints=joints,
            joints_2d=j2d,
            cells=z(P, 2, dtype=torch.long),
            offset=z(P, 2),
            pred_cam=z(P, 3),
            score_map=z(1, 1, 1),
        )


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
    res = evaluate_model(
        Oracle(reader, smplx_body, 224, scale=1.1, shift=(0.3, 0, 0), stray=True), reader, progress=False
    )
    assert res["pa_mpjpe"] == pytest.approx(0.0, abs=1e-2) and res["pa_pve"] == pytest.approx(0.0, abs=1e-2)
    assert res["mpjpe"] > 5.0 and res["pve"] > 5.0  # 10 % larger body: root-relative errors of centimetres
    # one stray detection per image: 8 TP, 3 FP, 0 FN
    assert res["precision"] == pytest.approx(800 / 11) and res["recall"] == pytest.approx(100.0)
    assert res["f1"] == pytest.approx(100 * 8 / (8 + 1.5))


SMPL_PARENTS = [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21]


def write_smpl_release(folder, n_verts=48, seed=0):
    """Gendered SMPL models as the SMPL release pickles them (latin1-readable protocol-2 pickles of plain
    arrays, J_regressor a scipy sparse matrix, kintree_table's root parent 2**32 - 1), on a small mesh."""
    import pickle

    import scipy.sparse

    folder.mkdir(parents=True, exist_ok=True)
    for g, k in (("m", 0), ("f", 1)):
        rng = np.random.default_rng(seed + k)
        weights = rng.random((n_verts, 24))
        weights /= weights.sum(1, keepdims=True)
        J = rng.random((24, n_verts)) * (rng.random((24, n_verts)) < 0.3)
        J /= J.sum(1, keepdims=True)
        parents = np.array(SMPL_PARENTS, dtype=np.int64)
        parents[0] = 2**32 - 1
        data = dict(
            v_template=rng.normal(0, 0.3, (n_verts, 3)),
            f=rng.integers(0, n_verts, (60, 3)).astype(np.uint32),
            shapedirs=rng.normal(0, 0.01, (n_verts, 3, 10)),
            posedirs=rng.normal(0, 0.01, (n_verts, 3, 207)),
            J_regressor=scipy.sparse.csc_matrix(J),
            weights=weights,
            kintree_table=np.stack([parents, np.arange(24)]),
            bs_type="lrotmin",
            bs_style="lbs",
        )
        with open(folder / f"basicmodel_{g}_lbs_10_207_0_v1.1.0.pkl", "wb") as f:
            pickle.dump(data, f, protocol=2)


def write_protocol_files(tmp_path, n_smplx, n_verts=48):
    """The three files of the standard protocol in their real formats (small mesh)."""
    import pickle

    write_smpl_release(tmp_path / "smpl", n_verts)
    rng = np.random.default_rng(5)
    reg = rng.random((17, n_verts)) * (rng.random((17, n_verts)) < 0.2)
    np.save(tmp_path / "J_regressor_h36m.npy", reg / reg.sum(1, keepdims=True))
    matrix = np.zeros((n_verts, n_smplx))
    matrix[np.arange(n_verts), np.arange(n_verts)] = 1.0  # SMPL vertex i = SMPL-X vertex i
    with open(tmp_path / "smplx2smpl.pkl", "wb") as f:
        pickle.dump({"matrix": matrix}, f, protocol=2)
    return tmp_path / "smpl", tmp_path / "J_regressor_h36m.npy", tmp_path / "smplx2smpl.pkl"


def smplx_library_ground_truth(smpl_dir, actor):
    """GT SMPL mesh and pelvis through smplx's own SMPL class (its own .pkl loader): an independent route."""
    import smplx

    path = next(smpl_dir.glob(f"basicmodel_{actor['gender'][0]}_*.pkl"))
    model = smplx.SMPL(str(path))
    sel = model.vertex_joint_selector.extra_joints_idxs  # real extra-joint vertex ids: modulo the small mesh
    sel.copy_(sel % model.v_template.shape[0])
    pose = torch.as_tensor(actor["poses_world"], dtype=torch.float32)[None]
    out = model(
        global_orient=pose[:, :3],
        body_pose=pose[:, 3:],
        betas=torch.as_tensor(actor["betas"][None], dtype=torch.float32),
        transl=torch.as_tensor(actor["trans_world"][None], dtype=torch.float32),
    )
    cam = np.asarray(actor["cam_pose"])
    R, t = cam[:3, :3], cam[:3, 3]
    return out.vertices[0].double().numpy() @ R.T + t, out.joints[0, 0].double().numpy() @ R.T + t


class SMPLOracle(nn.Module):
    """Per 3DPW actor: SMPL-X vertices whose first rows are the GT SMPL mesh, scaled/turned at the pelvis."""

    def __init__(self, reader, body, smpl_dir, size, scale=1.0, turn=0.0):
        super().__init__()
        import cv2

        self.body, self.config = body, type("Cfg", (), {"image_size": size})()
        self.queue, self.expected = [], []
        V = body.spec.num_vertices
        R = cv2.Rodrigues(np.array([0.0, turn, 0.0]))[0]
        for i in range(len(reader)):
            raw = reader[i]
            s = prepare_sample(raw, size)
            batch = collate([s], size, select=False)
            P = len(s.persons)
            verts, joints = torch.zeros(P, V, 3), torch.zeros(P, body.spec.num_joints, 3)
            for p in range(P):
                gv, groot = smplx_library_ground_truth(reader.smpl_dir, raw.extras["smpl"][p])
                pv = ((gv - groot) @ R.T) * scale + groot + np.array([0.1, 0.0, 0.2])  # pelvis moved too
                verts[p, : len(gv)] = torch.as_tensor(pv, dtype=torch.float32)
                joints[p, :22] = batch["joints_3d"][p, :22]
                joints[p, 0] = torch.as_tensor(groot + np.array([0.1, 0.0, 0.2]), dtype=torch.float32)
                self.expected.append((pv, groot + np.array([0.1, 0.0, 0.2]), gv, groot))
            j2d = torch.zeros(P, body.spec.num_joints, 2)
            j2d[:, :22] = batch["joints_2d"][:, :22]
            self.queue.append((joints, verts, j2d))

    forward = Oracle.forward


def recompute_standard_protocol(expected, regressor_path):
    """The published recipe written out again with roma (not our metrics module): mean over persons."""
    import roma

    reg = torch.as_tensor(np.load(regressor_path))
    j14 = [6, 5, 4, 1, 2, 3, 16, 15, 14, 11, 12, 13, 8, 10]

    def pa(x, y):
        R, t, s = roma.rigid_points_registration(x, y, compute_scaling=True)
        return ((s * x @ R.T + t - y).norm(dim=-1).mean() * 1000).item()

    rows = []
    for pv, proot, gv, groot in expected:
        x, y = torch.as_tensor(pv - proot), torch.as_tensor(gv - groot)
        hx, hy = reg @ x, reg @ y
        hx, hy = (hx - hx[0])[j14], (hy - hy[0])[j14]
        rows.append(
            {
                "pve": ((x - y).norm(dim=-1).mean() * 1000).item(),
                "pa_pve": pa(x, y),
                "mpjpe": ((hx - hy).norm(dim=-1).mean() * 1000).item(),
                "pa_mpjpe": pa(hx, hy),
            }
        )
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def test_threedpw_standard_protocol_matches_an_independent_recomputation(threedpw_root, smplx_body, tmp_path):
    from lighthmr_ros.training.pw3d_protocol import STANDARD, ThreeDPWProtocol

    smpl_dir, reg, mapping = write_protocol_files(tmp_path, smplx_body.spec.num_vertices)
    protocol = ThreeDPWProtocol.from_files(smpl_dir, reg, mapping)
    reader = create_dataset("3dpw", threedpw_root[0], split="test")
    reader.smpl_dir = smpl_dir
    oracle = SMPLOracle(reader, smplx_body, smpl_dir, 224, scale=0.9, turn=0.3)
    res = evaluate_model(oracle, reader, progress=False, protocol=protocol)
    assert res["protocol"] == STANDARD and "J_regressor_h36m" in res["protocol_description"]
    assert res["det_threshold"] == 0.2 and res["num_matched"] == 5
    expected = recompute_standard_protocol(oracle.expected, reg)
    for k in ("pve", "pa_pve", "mpjpe", "pa_mpjpe"):
        assert res[k] == pytest.approx(expected[k], rel=1e-4, abs=1e-3), k
    assert res["pve"] > 10.0 and res["pa_pve"] == pytest.approx(0.0, abs=1e-2)  # shape kept, pose turned
    assert "protocol 3dpw-standard" in format_table(res)


def test_threedpw_without_the_files_says_it_is_not_the_standard_protocol(threedpw_root, smplx_body):
    reader = create_dataset("3dpw", threedpw_root[0], split="test")
    res = evaluate_model(Oracle(reader, smplx_body, 224), reader, progress=False)
    assert res["protocol"] == "lighthmr-22joints" and "NOT the standard" in res["protocol_description"]
    assert res["det_threshold"] == 0.5 and res["pve"] is None


def test_protocol_files_are_checked(tmp_path, smplx_body):
    import pickle

    from lighthmr_ros.errors import DatasetError
    from lighthmr_ros.training.pw3d_protocol import ThreeDPWProtocol, load_smplx2smpl

    smpl_dir, reg, mapping = write_protocol_files(tmp_path, smplx_body.spec.num_vertices)
    np.save(tmp_path / "bad.npy", np.zeros((24, 48)))
    with pytest.raises(DatasetError, match=r"\(17, number of SMPL vertices\)"):
        ThreeDPWProtocol.from_files(smpl_dir, tmp_path / "bad.npy", mapping)
    with pytest.raises(DatasetError, match="no male SMPL model"):
        ThreeDPWProtocol.from_files(tmp_path / "nowhere", reg, mapping)
    with open(tmp_path / "transfer.pkl", "wb") as f:  # SMPL-X transfer setup: vertex half, then normal half
        pickle.dump({"mtx": np.hstack([np.eye(3), 2 * np.eye(3)])}, f)
    np.testing.assert_array_equal(load_smplx2smpl(tmp_path / "transfer.pkl"), np.eye(3))
    proto = ThreeDPWProtocol.from_files(smpl_dir, reg, mapping)
    with pytest.raises(DatasetError, match="SMPL-X checkpoint"):
        proto.check_prediction_mesh(13718)  # an Anny mesh


def test_evaluate_command_wants_all_three_protocol_files(tmp_path, capsys):
    from lighthmr_ros.cli import main as cli_main

    rc = cli_main(
        [
            "evaluate",
            "--checkpoint",
            str(tmp_path / "m.pt"),
            "--dataset",
            "3dpw",
            "--root",
            str(tmp_path),
            "--smpl-dir",
            str(tmp_path),
            "--device",
            "cpu",
        ]
    )
    assert rc == 2 and "needs --h36m-regressor, --smplx2smpl" in capsys.readouterr().err


def test_shards_summed_give_the_whole_evaluation(bedlam_root, smplx_body):
    """What validation on every DDP rank relies on: per-shard totals added up = one pass over all images."""
    reader = create_dataset("bedlam", bedlam_root[0], split="train")

    def oracle(indices):  # moved, scaled people plus a stray detection per image, for these images in turn
        return Oracle([reader[i] for i in indices], smplx_body, 224, scale=1.1, shift=(0.3, 0, 0), stray=True)

    n = len(reader)
    whole = evaluate_model(oracle(range(n)), reader, progress=False)
    odd, even = range(1, n, 2), range(0, n, 2)
    other: list[float] = []
    evaluate_model(oracle(odd), reader, indices=odd, reduce=lambda t: other.extend(t) or t, progress=False)
    mine = evaluate_model(oracle(even), reader, indices=even, progress=False,
                          reduce=lambda t: [a + b for a, b in zip(t, other, strict=True)])
    assert whole["num_matched"] == 8 and whole["false_positives"] == 3 and whole["mpjpe"] > 5.0
    for key in ("num_gt", "num_matched", "false_positives", "f1", "mpjpe", "pa_mpjpe", "pve", "pa_pve"):
        assert mine[key] == pytest.approx(whole[key], rel=1e-9), key
