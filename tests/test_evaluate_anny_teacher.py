"""`lighthmr evaluate` with the Multi-HMR-Anny teacher on Anny scenes: its 163-bone rig against the
scenes' 104-bone annotation (lighthmr_ros.body.correspondence)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lighthmr_ros.body.correspondence import body_correspondence, select_vertices
from lighthmr_ros.errors import DatasetError
from lighthmr_ros.model.hmr import Detections
from lighthmr_ros.training.datasets import create_dataset
from lighthmr_ros.training.evaluate import evaluate_model
from lighthmr_ros.training.supervision import build_person_targets
from lighthmr_ros.training.targets import collate, prepare_sample, project_points

pytestmark = pytest.mark.slow


def teacher_detections(vertices: torch.Tensor, joints: torch.Tensor, joints_2d: torch.Tensor) -> Detections:
    """What the teacher returns for P people (163 bones), with the given mesh and joints, the rest zeros."""
    P, J, z = len(vertices), joints.shape[1], torch.zeros
    return Detections(
        batch_index=z(P, dtype=torch.long), score=torch.ones(P), loc=z(P, 2), dist=z(P), transl=z(P, 3),
        transl_pelvis=z(P, 3), rotmat=torch.eye(3).repeat(P, J, 1, 1), rotvec=z(P, J, 3), shape=z(P, 6),
        expression=z(P, 0), vertices=vertices, joints=joints, joints_2d=joints_2d,
        cells=z(P, 2, dtype=torch.long), offset=z(P, 2), pred_cam=z(P, 3), score_map=z(1, 1, 1),
    )  # fmt: skip


@pytest.fixture(scope="module")
def fullbody():
    from lighthmr_ros.body.anny_model import AnnyFullBody

    return AnnyFullBody()


def test_rigs_correspond_on_the_shared_template(fullbody, anny_body):
    corr = body_correspondence(fullbody, anny_body)
    names = [anny_body.spec.joint_names[i] for i in corr.gt_joints]
    assert len(names) == 103 and "root" not in names and "head" in names
    assert [fullbody.spec.joint_names[i] for i in corr.pred_joints] == names
    assert [names[i] for i in corr.root] == ["pelvis.L", "pelvis.R"]
    assert corr.pred_vertices.shape == (anny_body.spec.num_vertices,)
    # Both rigs skin one template: through the correspondence the rest meshes and bone heads are equal.
    verts = select_vertices(fullbody.anny.template_vertices, corr)
    torch.testing.assert_close(verts, anny_body.anny.template_vertices, atol=0, rtol=0)
    torch.testing.assert_close(
        fullbody.anny.template_bone_heads[corr.pred_joints],
        anny_body.anny.template_bone_heads[corr.gt_joints],
        atol=1e-6,
        rtol=0,
    )
    # The same body model corresponds one to one, centred on its root.
    same = body_correspondence(anny_body, anny_body)
    assert same.pred_vertices is None and same.root == (0,) and len(same.gt_joints) == 104


def test_root_is_placed_from_its_children(anny_body):
    """On posed, moved student skeletons the root comes back from pelvis.L/R and spine05 alone."""
    import roma

    from lighthmr_ros.body.correspondence import root_from_children

    gen = torch.Generator().manual_seed(0)
    rot = roma.rotvec_to_rotmat(torch.randn(4, anny_body.spec.num_pose_joints, 3, generator=gen) * 0.4)
    shape = torch.rand(4, 6, generator=gen)
    joints = anny_body(rot, shape).joints + torch.randn(4, 1, 3, generator=gen)
    posed = {n: joints[:, i] for i, n in enumerate(anny_body.spec.joint_names)}
    torch.testing.assert_close(root_from_children(anny_body, posed, shape), joints[:, 0], atol=1e-5, rtol=0)
    posed["spine05"] = posed["spine05"] + torch.tensor([0.05, 0.0, 0.0])  # a child elsewhere moves the root
    assert (root_from_children(anny_body, posed, shape) - joints[:, 0]).norm(dim=-1).min() > 0.01


def test_other_body_families_are_refused(anny_body, smplx_model_dir):
    from lighthmr_ros.body import create_body_model

    smplx = create_body_model("smplx", smplx_model_dir)
    with pytest.raises(DatasetError, match="no correspondence"):
        body_correspondence(smplx, anny_body)


class GroundTruthInTeacherRig:
    """A runner that 'predicts' each scene's people exactly, written into the teacher's 163-bone rig
    through the inverse of the correspondence; the rig's own root, which the annotation lacks, is put
    a metre off so that any use of it shows in the errors."""

    def __init__(self, reader, size: int, corr, fullbody):
        self.samples = [prepare_sample(reader[i], size) for i in range(len(reader))]
        self.corr, self.spec, self.calls = corr, fullbody.spec, 0

    def __call__(self, images, K, **kwargs) -> Detections:
        sample = self.samples[self.calls]
        self.calls += 1
        P, J, V = len(sample.persons), self.spec.num_joints, 19158
        joints = torch.zeros(P, J, 3)
        vertices = torch.zeros(P, V, 3)
        for p, person in enumerate(sample.persons):
            n = person.native
            joints[p, self.corr.pred_joints] = torch.as_tensor(n["joints"][self.corr.gt_joints], dtype=torch.float32)
            joints[p, 0] = joints[p, self.corr.pred_joints[self.corr.root[0]]] + torch.tensor([1.0, 0.0, 0.0])
            vertices[p, self.corr.pred_vertices] = torch.as_tensor(n["vertices"], dtype=torch.float32)
        j2d = torch.as_tensor(
            np.stack([project_points(j.numpy().astype(np.float64), sample.K) for j in joints]), dtype=torch.float32
        ).reshape(P, J, 2)
        return teacher_detections(vertices, joints, j2d)


def test_teacher_rig_is_measured_on_the_annotation(synth_root, fullbody, anny_body):
    """Exact predictions in the teacher's rig score zero error and full detection; the protocol says so."""
    from types import SimpleNamespace

    reader = create_dataset("synthetic", synth_root, split="all")
    size = 224
    model = torch.nn.Module()  # what evaluate_model reads of a model when a runner runs it: body, input size
    model.body = fullbody
    model.config = SimpleNamespace(image_size=size)
    corr = body_correspondence(fullbody, anny_body)
    runner = GroundTruthInTeacherRig(reader, size, corr, fullbody)
    summary = evaluate_model(model, reader, size=size, runner=runner, progress=False, det_threshold=0.0)
    assert summary["num_gt"] > 0 and summary["num_matched"] == summary["num_gt"]
    assert summary["f1"] == pytest.approx(100.0)
    for key in ("mpjpe", "pa_mpjpe", "pve", "pa_pve"):
        assert summary[key] < 1e-3, (key, summary[key])
    assert summary["protocol"] == "synthetic-native-cross-rig"
    assert "103 of 104 joints" in summary["protocol_description"]


def test_evaluate_cli_takes_the_official_teacher_file(synth_root, tmp_path, capsys, anny_official_file):
    """The official checkpoint format (Namespace args) runs through `lighthmr evaluate` on Anny scenes."""
    from lighthmr_ros.cli import main as cli_main

    ckpt = anny_official_file
    out = tmp_path / "m.json"
    argv = [
        "evaluate",
        "--checkpoint",
        str(ckpt),
        "--dataset",
        "synthetic",
        "--root",
        str(synth_root),
        "--det-threshold",
        "0.3",
        "--device",
        "cpu",
        "--output",
        str(out),
    ]
    assert cli_main(argv) == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["protocol"] == "synthetic-native-cross-rig" and "PA-PVE" in printed
    assert result["num_gt"] > 0 and result["images"] == 3


# ------------------------------------------------------------------ SMPL-X data sets: anny2smplx.pth
def write_anny2smplx(path, smplx_vertices: int, anny_vertices: int, seed: int = 0) -> dict:
    """A correspondence file in the layout of Anny's anny2smplx.pth: each SMPL-X vertex a barycentric blend
    of three distinct Anny vertices of a mesh of ``anny_vertices`` (13,718: the default Anny model's, 19,158:
    the base mesh), weights stored as a tuple of three arrays, the reverse map sized by that mesh."""
    rng = np.random.default_rng(seed)
    slots = rng.permutation(anny_vertices)[: 3 * smplx_vertices].reshape(smplx_vertices, 3)
    w = rng.dirichlet([2.0, 2.0, 2.0], size=smplx_vertices)
    data = {
        "anny2dst_vertex_indices": torch.as_tensor(slots, dtype=torch.int64),
        "anny2dst_barycentric_coordinates": tuple(torch.as_tensor(w[:, k]) for k in range(3)),
        "dst_faces": torch.zeros(1, 3, dtype=torch.int64),
        "dst2anny_vertex_indices": torch.zeros(anny_vertices, 3, dtype=torch.int64),
        "dst2anny_barycentric_coordinates": tuple(torch.ones(anny_vertices) / 3 for _ in range(3)),
        "anny_faces": torch.zeros(1, 4, dtype=torch.int64),
    }
    torch.save(data, path)
    return {"slots": slots, "weights": w}


@pytest.fixture(scope="module")
def smplx_body(smplx_model_dir):
    from lighthmr_ros.body.smplx_model import SMPLXBody

    return SMPLXBody(smplx_model_dir)


class SMPLXTruthAsAnnyMesh:
    """'Predicts' each BEDLAM person's SMPL-X GT mesh written into the teacher's Anny mesh so that the
    file's blend gives it back exactly; the Anny joints are garbage (only the mesh may be used)."""

    def __init__(self, reader, size, smplx_body, slots_in_teacher_mesh):
        self.queue = []
        for i in range(len(reader)):
            s = prepare_sample(reader[i], size)
            batch = collate([s], size, select=False)
            t = build_person_targets(batch, torch.ones(len(s.persons), dtype=torch.bool), smplx_body, "cpu")
            verts = torch.zeros(len(s.persons), 19158, 3)
            for k in range(3):
                verts[:, torch.as_tensor(slots_in_teacher_mesh[:, k])] = t.vertices
            self.queue.append((verts, t))

    def __call__(self, images, K, **kwargs) -> Detections:
        verts, _ = self.queue.pop(0)
        P = len(verts)  # the Anny joints are garbage: only the mesh may be used
        return teacher_detections(verts, torch.full((P, 163, 3), 7.0), torch.zeros(P, 163, 2))


@pytest.mark.parametrize("anny_mesh", [19158, 13718])
def test_anny_meshes_are_measured_on_smplx_data(bedlam_root, smplx_body, fullbody, anny_body, tmp_path, anny_mesh):
    """An Anny mesh that re-samples to the GT SMPL-X mesh: PVE/PA-PVE equal the offset of the regressed
    pelvis, MPJPE equals the regressed-vs-kinematic joint difference, all persons matched."""
    from types import SimpleNamespace

    from lighthmr_ros.body.anny2smplx import AnnyToSMPLX
    from lighthmr_ros.training.metrics import mpjpe, pa_mpjpe

    path = tmp_path / "anny2smplx.pth"
    made = write_anny2smplx(path, smplx_body.spec.num_vertices, anny_mesh)
    mapping = AnnyToSMPLX.load(path, fullbody, smplx_body)
    base = anny_body.anny.base_mesh_vertex_indices.numpy() if anny_mesh == 13718 else np.arange(19158)
    torch.testing.assert_close(mapping.indices, torch.as_tensor(base[made["slots"]]))

    reader = create_dataset("bedlam", bedlam_root[0], split="train")
    size = 224
    runner = SMPLXTruthAsAnnyMesh(reader, size, smplx_body, base[made["slots"]])
    expected = {"mpjpe": [], "pa_mpjpe": [], "pve": [], "pa_pve": []}
    for _, t in runner.queue:  # the same measures computed here from the GT mesh itself
        reg = smplx_body.joints_from_vertices(t.vertices)
        for p in range(len(reg)):
            pj, gj = reg[p, :22].numpy(), t.joints[p, :22].numpy()
            expected["mpjpe"].append(mpjpe(pj, gj, root=0))
            expected["pa_mpjpe"].append(pa_mpjpe(pj, gj))
            gv = t.vertices[p].numpy()
            expected["pve"].append(mpjpe(gv - pj[0], gv - gj[0]))
            expected["pa_pve"].append(pa_mpjpe(gv, gv))
    model = torch.nn.Module()
    model.body, model.config = fullbody, SimpleNamespace(image_size=size)
    summary = evaluate_model(model, reader, size=size, runner=runner, progress=False, anny2smplx=mapping)
    assert summary["num_gt"] == 8 and summary["num_matched"] == 8 and summary["f1"] == pytest.approx(100.0)
    for key, values in expected.items():
        assert summary[key] == pytest.approx(float(np.mean(values)), abs=1e-3), key
    assert summary["pa_pve"] < 1e-3 and summary["protocol"] == "bedlam-lighthmr-anny2smplx"


def test_anny2smplx_file_errors(tmp_path, smplx_body, fullbody):
    from lighthmr_ros.body.anny2smplx import AnnyToSMPLX
    from lighthmr_ros.errors import BodyModelError

    V = smplx_body.spec.num_vertices
    with pytest.raises(BodyModelError, match="does not exist"):
        AnnyToSMPLX.load(tmp_path / "missing.pth", fullbody, smplx_body)
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    with pytest.raises(BodyModelError, match="not a readable torch file"):
        AnnyToSMPLX.load(tmp_path / "junk.pth", fullbody, smplx_body)
    torch.save({"anny_faces": torch.zeros(1, 4)}, tmp_path / "keys.pth")
    with pytest.raises(BodyModelError, match="needs"):
        AnnyToSMPLX.load(tmp_path / "keys.pth", fullbody, smplx_body)
    write_anny2smplx(tmp_path / "rows.pth", V + 5, 19158)
    with pytest.raises(BodyModelError, match="use the SMPL-X model the file was made for"):
        AnnyToSMPLX.load(tmp_path / "rows.pth", fullbody, smplx_body)
    write_anny2smplx(tmp_path / "mesh.pth", V, 12000)
    with pytest.raises(BodyModelError, match="Anny mesh of 12000 vertices"):
        AnnyToSMPLX.load(tmp_path / "mesh.pth", fullbody, smplx_body)
    data = torch.load(tmp_path / "mesh.pth", weights_only=True)
    data["anny2dst_barycentric_coordinates"] = tuple(torch.ones(V) for _ in range(3))
    torch.save(data, tmp_path / "weights.pth")
    with pytest.raises(BodyModelError, match="sum to 1"):
        AnnyToSMPLX.load(tmp_path / "weights.pth", fullbody, smplx_body)


def test_evaluate_cli_names_the_missing_correspondence(bedlam_root, tmp_path, anny_official_file, monkeypatch, capsys):
    """An Anny checkpoint on an SMPL-X data set without the correspondence file: one clear sentence."""
    import lighthmr_ros.body.anny2smplx as a2s
    from lighthmr_ros.cli import main as cli_main

    monkeypatch.setattr(a2s, "default_anny2smplx_path", lambda: None)  # a machine without Anny's non-commercial data
    ckpt = anny_official_file
    argv = ["evaluate", "--checkpoint", str(ckpt), "--dataset", "bedlam", "--root", str(bedlam_root[0]),
            "--device", "cpu", "--output", str(tmp_path / "m.json")]  # fmt: skip
    assert cli_main(argv) != 0
    err = capsys.readouterr().err
    assert "predicts Anny meshes" in err and "--anny2smplx" in err and "Traceback" not in err


def test_threedpw_standard_protocol_takes_an_anny_mesh(threedpw_root, smplx_body, fullbody, tmp_path):
    """3DPW's standard protocol on an Anny mesh that re-samples to an SMPL-X mesh whose smplx2smpl image is
    the GT SMPL mesh: the numbers equal the published recipe recomputed independently, centred on the
    pelvis SMPL-X regresses from the re-sampled mesh."""
    from types import SimpleNamespace

    from test_training_evaluate import recompute_standard_protocol, smplx_library_ground_truth, write_protocol_files

    from lighthmr_ros.body.anny2smplx import AnnyToSMPLX
    from lighthmr_ros.training.pw3d_protocol import STANDARD, ThreeDPWProtocol

    V = smplx_body.spec.num_vertices
    smpl_dir, reg, smplx2smpl = write_protocol_files(tmp_path, V)
    protocol = ThreeDPWProtocol.from_files(smpl_dir, reg, smplx2smpl)
    made = write_anny2smplx(tmp_path / "anny2smplx.pth", V, 19158)
    mapping = AnnyToSMPLX.load(tmp_path / "anny2smplx.pth", fullbody, smplx_body)
    reader = create_dataset("3dpw", threedpw_root[0], split="test")
    reader.smpl_dir = smpl_dir
    queue, expected = [], []
    for i in range(len(reader)):
        raw = reader[i]
        meshes = []
        for actor in raw.extras["smpl"]:
            gv, groot = smplx_library_ground_truth(smpl_dir, actor)
            sx = torch.as_tensor(gv[np.arange(V) % len(gv)], dtype=torch.float32)  # SMPL-X rows i: SMPL vertex i
            pelvis = smplx_body.joints_from_vertices(sx[None])[0, 0].double().numpy()
            expected.append((gv, pelvis, gv, groot))
            meshes.append(sx)
        anny = torch.zeros(len(meshes), 19158, 3)
        for k in range(3):
            anny[:, torch.as_tensor(made["slots"][:, k])] = torch.stack(meshes)
        queue.append(anny)

    def runner(images, K, **kwargs) -> Detections:
        verts = queue.pop(0)
        return teacher_detections(verts, torch.zeros(len(verts), 163, 3), torch.zeros(len(verts), 163, 2))

    model = torch.nn.Module()
    model.body, model.config = fullbody, SimpleNamespace(image_size=224)
    res = evaluate_model(model, reader, runner=runner, progress=False, protocol=protocol, anny2smplx=mapping)
    assert res["protocol"] == f"{STANDARD}-anny2smplx" and res["num_matched"] == res["num_gt"] == len(expected)
    want = recompute_standard_protocol(expected, reg)
    for k in ("pve", "pa_pve", "mpjpe", "pa_mpjpe"):
        assert res[k] == pytest.approx(want[k], rel=1e-4, abs=1e-3), k
    assert res["pa_pve"] == pytest.approx(0.0, abs=1e-2)
