"""Evaluation loop: detection precision/recall/F1 and per-person 3-D errors on a data set.

Protocol (see metrics.py for the matching rule):
  - each image is letterboxed to the model's input size (no augmentation) and run through the
    model's ``forward`` (threshold ``det_threshold``, max-pool NMS);
  - predictions are matched to ground truth per image with ROMP/Multi-HMR's greedy 2-D keypoint
    matching on the GT's 2-D joints present in both skeletons (22 body joints for 3DPW, the 55
    SMPL-X joints for BEDLAM/synthetic), IoU >= 0.05; AGORA follows its own evaluator: the first 24
    joints, IoU >= 0.1, GT with isValid False neither matched nor missed;
  - synthetic (Anny) scenes: matching and joint errors use all of the body model's own joints; a model
    with another Anny rig (the Multi-HMR-Anny teacher) is measured on the joints and vertices the rigs
    share (lighthmr_ros.body.correspondence), centred on the hip mid-point, protocol ``...-cross-rig``;
  - matched persons: MPJPE / PA-MPJPE on the 22 body joints (SMPL-X 0-21) centred on the pelvis (AGORA:
    the hip mid-point), PVE / PA-PVE on all vertices centred on each mesh's own pelvis joint, when GT
    vertices exist (BEDLAM/synthetic: rebuilt from the SMPL-X parameters; AGORA: the dataframe's gt_verts);
  - 3DPW: with the SMPL files (``ThreeDPWProtocol``) the standard protocol of the published tables
    (pw3d_protocol.py: smplx2smpl, gendered SMPL GT, 14 H36M/LSP joints, threshold 0.2, rounded P/R/F1);
    without them the 22 shared joints only, labelled as NOT comparable;
  - errors are averaged per matched person, in millimetres. Every summary names its ``protocol``.
AGORA's hand/face parts and its official evaluator are not reproduced: its numbers compare our own
checkpoints.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path

import torch

from lighthmr_ros.body.anny2smplx import AnnyToSMPLX
from lighthmr_ros.body.correspondence import body_correspondence, select_vertices
from lighthmr_ros.errors import BodyModelError, ConfigError, DatasetError
from lighthmr_ros.model.camera import project
from lighthmr_ros.training.losses import joint_index_map
from lighthmr_ros.training.metrics import (
    MetricAccumulator,
    match_2d_greedy,
    mpjpe,
    pa_mpjpe,
    summary_from_totals,
)
from lighthmr_ros.training.pw3d_protocol import (
    PROTOCOLS,
    SHARED_JOINTS,
    STANDARD,
    STANDARD_DET_THRESHOLD,
    ThreeDPWProtocol,
    rounded_prf1,
)
from lighthmr_ros.training.supervision import build_person_targets
from lighthmr_ros.training.targets import NUM_BODY_JOINTS, collate, prepare_sample

log = logging.getLogger(__name__)


OTHER_PROTOCOLS = {
    "bedlam": (
        "bedlam-lighthmr",
        "BEDLAM: PVE / PA-PVE on all SMPL-X vertices, pelvis-centred (Multi-HMR's BEDLAM-val "
        "measure); MPJPE on SMPL-X joints 0-21 added",
    ),
    "agora": (
        "agora-lighthmr",
        "AGORA: the official matching (24 joints, IoU 0.1, isValid), body joints 0-21 "
        "hip-centred; not the official evaluator (no hands/face, no NMJE)",
    ),
    "synthetic": ("synthetic-native", "synthetic scenes: the body model's own joints and vertices"),
}


def describe_protocol(dataset: str, protocol: ThreeDPWProtocol | None) -> tuple[str, str]:
    """(name, sentence) of the protocol that produces a data set's numbers."""
    if dataset == "3dpw":
        name = STANDARD if protocol is not None else SHARED_JOINTS
        return name, PROTOCOLS[name]
    return OTHER_PROTOCOLS.get(dataset, (f"{dataset}-lighthmr", f"{dataset}: lighthmr's own measure"))


@torch.no_grad()
def evaluate_model(
    model,
    reader,
    size: int | None = None,
    device="cpu",
    det_threshold: float | None = None,
    nms_kernel: int | None = None,
    max_humans: int = 20,
    progress: bool = True,
    protocol: ThreeDPWProtocol | None = None,
    limit: int | None = None,
    runner=None,
    indices: Iterable[int] | None = None,
    reduce: Callable[[list[float]], list[float]] | None = None,
    anny2smplx: AnnyToSMPLX | None = None,
) -> dict:
    """Metrics of ``model`` (an HMRModel) over ``reader`` (an HMRDataset).

    ``indices``: evaluate these items only (a shard: validation on every DDP rank); ``reduce``: combines
    the accumulator's ``totals()`` across processes before the summary (e.g. an all-reduce sum).

    ``protocol``: 3DPW's standard protocol files (the numbers then compare with published tables);
    ``det_threshold``: default 0.2 under that protocol (Multi-HMR's evaluation), else 0.5.
    ``runner``: what runs the network instead of ``model`` itself (called like it), e.g. the
    onnxruntime backend (``lighthmr_ros.onnx_backend.OnnxHMR``); ``model`` still provides the
    config, the body model for the ground truth and the device.
    ``anny2smplx``: an Anny model on SMPL / SMPL-X annotations: its meshes re-sampled on SMPL-X and SMPL-X's
    joints regressed from them (``lighthmr_ros.body.anny2smplx``); that SMPL-X body builds the GT meshes."""
    device = torch.device(device)
    model = model.to(device).eval()
    size = size or model.config.image_size
    if size != model.config.image_size:  # the decoder's position queries are sized by the training grid
        raise ConfigError(
            f"this checkpoint runs at {model.config.image_size} px, not {size}; drop --image-size"
        )
    spec = model.body.spec if anny2smplx is None else anny2smplx.smplx.spec  # the SMPL-X data's terms
    smplx_gt_body = model.body if anny2smplx is None else anny2smplx.smplx.to(device)
    dataset = getattr(reader, "name", "")
    standard = protocol is not None and dataset == "3dpw"
    if standard:
        protocol.check_prediction_mesh(spec.num_vertices)
    if det_threshold is None:
        det_threshold = STANDARD_DET_THRESHOLD if standard else 0.5
    is_agora = dataset == "agora"
    iou = 0.1 if is_agora else 0.05
    body_m, body_s = joint_index_map(spec.joint_names, count=NUM_BODY_JOINTS)
    pelvis = (1, 2) if is_agora else 0  # indices into the 22 body joints
    acc = MetricAccumulator()
    native_bodies: dict[str, tuple] = {}  # annotation body name -> (GT body model, Correspondence)
    n = len(reader) if limit is None else min(limit, len(reader))
    it = range(n) if indices is None else [i for i in indices if i < n]
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc=f"evaluate {dataset}", unit="img")
    for i in it:
        raw = reader[i]
        sample = prepare_sample(raw, size)
        batch = collate([sample], size, select=False)
        det = (runner or model)(
            batch["images"].to(device),
            batch["K"].to(device),
            det_threshold=det_threshold,
            nms_kernel=nms_kernel,
            max_humans=max_humans,
        )
        G = len(sample.persons)
        valid = batch["valid"].numpy()
        keep = torch.ones(G, dtype=torch.bool)
        corr = None
        if batch.get("native_body") is not None:  # synthetic scenes: the annotation's own body model
            if batch["native_body"] not in native_bodies:
                native_bodies[batch["native_body"]] = _native_ground_truth(model.body, batch["native_body"])
            gt_body, corr = native_bodies[batch["native_body"]]
            tgt = build_person_targets(batch, keep, gt_body, device) if G else None
            eval_joints, root = corr.gt_joints, corr.root
            gt_kps = batch["native_joints_2d"][:, corr.gt_joints].numpy()
            pred_kps = det.joints_2d[:, corr.pred_joints].cpu().numpy()
        else:  # 2-D keypoints for matching: GT joints present in both skeletons
            if anny2smplx is not None:
                det = _in_smplx_terms(det, batch["K"].to(device), anny2smplx)
            elif hasattr(model.body, "anny"):
                raise DatasetError(
                    f"the checkpoint predicts Anny meshes ({spec.name}) and {dataset} is annotated in "
                    "SMPL/SMPL-X: give --anny2smplx (Anny's anny2smplx.pth correspondence) and "
                    "--smplx-model-dir to measure it in SMPL-X terms."
                )
            tgt = build_person_targets(batch, keep, smplx_gt_body, device) if G else None
            eval_joints, root = body_m, pelvis
            n_match = min(24, batch["joints_2d"].shape[1]) if is_agora else batch["joints_2d"].shape[1]
            jm, js = joint_index_map(spec.joint_names, count=n_match)
            if not jm:
                raise DatasetError(
                    f"the checkpoint's {spec.name} body shares no joints with the SMPL/SMPL-X annotation "
                    f"of {dataset}: evaluate an SMPL-X checkpoint on it."
                )
            gt_kps = batch["joints_2d"][:, js].numpy()
            pred_kps = det.joints_2d[:, jm].cpu().numpy()
        matches, false_pos, misses = match_2d_greedy(pred_kps, gt_kps, iou_thresh=iou, valid_gt=valid)
        acc.detection.add(int(valid.sum()), len(misses), len(false_pos))
        for p, g in matches:
            if standard:
                gv, groot = protocol.ground_truth(raw.extras["smpl"][g])
                acc.add_person(
                    **protocol.errors(
                        det.vertices[p].cpu().double().numpy(),
                        det.joints[p, spec.pelvis_index].cpu().double().numpy(),
                        gv,
                        groot,
                    )
                )
                continue
            errors = {}
            pred_joints = corr.pred_joints if corr is not None else eval_joints
            jmask = tgt.joints_mask[g, eval_joints].cpu().numpy()
            pj = det.joints[p, pred_joints].cpu().numpy()
            gj = tgt.joints[g, eval_joints].cpu().numpy()
            if jmask.all() and eval_joints:
                errors["mpjpe"] = mpjpe(pj, gj, root=root)
                errors["pa_mpjpe"] = pa_mpjpe(pj, gj)
            pv = det.vertices[p] if det.vertices is not None else None
            if pv is not None and tgt.vertices is not None and bool(tgt.vertices_mask[g]):
                if corr is not None:  # the mesh in the annotation's vertices, centred as its joints
                    pv = select_vertices(pv, corr)
                    proot, groot = pj[list(corr.root)].mean(0), gj[list(corr.root)].mean(0)
                else:
                    proot = det.joints[p, spec.pelvis_index].cpu().numpy()
                    groot = tgt.joints[g, spec.pelvis_index].cpu().numpy()
                pv, gv = pv.cpu().numpy(), tgt.vertices[g].cpu().numpy()
                errors["pve"] = mpjpe(pv - proot, gv - groot)
                errors["pa_pve"] = pa_mpjpe(pv, gv)
            acc.add_person(**errors)
    totals = acc.totals()
    summary = summary_from_totals(reduce(totals) if reduce is not None else totals)
    name, sentence = describe_protocol(dataset, protocol)
    rigs = [c.description for _, c in native_bodies.values() if c.pred_vertices is not None]
    if anny2smplx is not None and not native_bodies:
        name, sentence = f"{name}-anny2smplx", (
            f"{sentence}; the Anny meshes re-sampled on SMPL-X by {Path(anny2smplx.source).name}, SMPL-X "
            "joints regressed from them"
        )
    if rigs:  # another rig of the annotation's body model (the Anny teacher on Anny scenes)
        name, sentence = f"{name}-cross-rig", f"{sentence}; {'; '.join(rigs)}"
    if standard:  # the published tables print fractions rounded to 2 decimals
        summary.update({f"{k}_unrounded": summary[k] for k in ("precision", "recall", "f1")})
        summary.update(rounded_prf1(summary["precision"], summary["recall"], summary["f1"]))
    summary.update(
        dataset=dataset,
        images=n,
        det_threshold=det_threshold,
        iou_threshold=iou,
        protocol=name,
        protocol_description=sentence,
    )
    return summary


def _in_smplx_terms(det, K: torch.Tensor, anny2smplx: AnnyToSMPLX):
    """An Anny model's detections with SMPL-X vertices, joints regressed from them and their projection
    (network-image pixels, the batch's K)."""
    if det.vertices is None:
        raise DatasetError("this runner returns no vertices: an Anny model is measured on SMPL-X through its mesh")
    vertices = anny2smplx.vertices(det.vertices.float())
    joints = anny2smplx.joints(vertices).to(vertices.dtype)
    joints_2d = project(joints, K[det.batch_index].to(joints.dtype))
    return replace(det, vertices=vertices, joints=joints, joints_2d=joints_2d)


def _native_ground_truth(model_body, name: str):
    """(GT body model, Correspondence) for scenes annotated in the body model ``name``."""
    from lighthmr_ros.body import create_body_model

    if name == model_body.spec.name:
        gt_body = model_body
    else:
        try:
            gt_body = create_body_model(name)
        except BodyModelError as exc:
            raise DatasetError(f"these scenes are annotated with the {name} body model: {exc}") from exc
        gt_body = gt_body.to(model_body.faces.device)
    return gt_body, body_correspondence(model_body, gt_body)


def format_table(summary: dict) -> str:
    """Two-line plain table of the headline numbers."""
    cols = [
        ("MPJPE", "mpjpe"),
        ("PA-MPJPE", "pa_mpjpe"),
        ("PVE", "pve"),
        ("PA-PVE", "pa_pve"),
        ("Precision", "precision"),
        ("Recall", "recall"),
        ("F1", "f1"),
    ]
    head = " | ".join(f"{name:>9}" for name, _ in cols)
    vals = " | ".join(f"{summary[k]:9.1f}" if summary.get(k) is not None else f"{'n/a':>9}" for _, k in cols)
    info = (
        f"{summary.get('dataset', '')}: {summary.get('images', 0)} images, "
        f"{summary.get('num_gt', 0)} people, "
        f"{summary.get('num_matched', 0)} matched, {summary.get('false_positives', 0)} false positives "
        f"(errors in mm, detection in %)"
    )
    proto = (
        f"protocol {summary['protocol']}: {summary.get('protocol_description', '')}"
        if "protocol" in summary
        else ""
    )
    return "\n".join(line for line in (info, head, vals, proto) if line)


def load_model_for_eval(checkpoint: str, device: str = "cpu", smplx_model_dir: str | None = None):
    from lighthmr_ros.model.checkpoint import load_checkpoint

    return load_checkpoint(checkpoint, device=device, smplx_model_dir=smplx_model_dir)


__all__ = ["evaluate_model", "format_table", "describe_protocol", "load_model_for_eval"]
