"""`lighthmr evaluate` with the Multi-HMR-Anny teacher on Anny scenes: its 163-bone rig against the
scenes' 104-bone annotation (lighthmr_ros.body.correspondence)."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

from lighthmr_ros.body.correspondence import body_correspondence, select_vertices
from lighthmr_ros.errors import DatasetError
from lighthmr_ros.model.hmr import Detections
from lighthmr_ros.training.datasets import create_dataset
from lighthmr_ros.training.evaluate import evaluate_model
from lighthmr_ros.training.targets import prepare_sample, project_points

pytestmark = pytest.mark.slow


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
        zeros = torch.zeros(P)
        return Detections(
            batch_index=torch.zeros(P, dtype=torch.long),
            score=torch.ones(P),
            loc=j2d[:, self.spec.head_index],
            dist=zeros,
            transl=torch.zeros(P, 3),
            transl_pelvis=torch.zeros(P, 3),
            rotmat=torch.eye(3).repeat(P, J, 1, 1),
            rotvec=torch.zeros(P, J, 3),
            shape=torch.zeros(P, 6),
            expression=torch.zeros(P, 0),
            vertices=vertices,
            joints=joints,
            joints_2d=j2d,
            cells=torch.zeros(P, 2, dtype=torch.long),
            offset=torch.zeros(P, 2),
            pred_cam=torch.zeros(P, 3),
            score_map=torch.zeros(1, 1, 1),
        )


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


def test_evaluate_cli_takes_the_official_teacher_file(synth_root, tmp_path, capsys, anny_reference_state):
    """The official checkpoint format (Namespace args) runs through `lighthmr evaluate` on Anny scenes."""
    from lighthmr_ros.cli import main as cli_main

    ckpt = tmp_path / "multiHMR_448_S_anny.pt"
    args = argparse.Namespace(
        img_size=448,
        backbone="dinov2_vits14",
        xat_dim=512,
        xat_depth=2,
        xat_heads=16,
        xat_dim_head=32,
        xat_mlp_dim=2048,
        person_center="head",
        num_betas=11,
        simple_depth_encoding=1,
    )
    torch.save({"model_state_dict": anny_reference_state, "args": args}, ckpt)
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
