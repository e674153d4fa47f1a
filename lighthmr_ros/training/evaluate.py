"""Evaluation loop: detection precision/recall/F1 and per-person 3-D errors on a data set.

Protocol (see metrics.py for the matching rule):
  - each image is letterboxed to the model's input size (no augmentation) and run through the
    model's ``forward`` (threshold ``det_threshold``, max-pool NMS);
  - predictions are matched to ground truth per image with ROMP/Multi-HMR's greedy 2-D keypoint
    matching on the GT's 2-D joints present in both skeletons (22 body joints for 3DPW, the 55
    SMPL-X joints for BEDLAM/synthetic), IoU >= 0.05; AGORA follows its own evaluator: the first 24
    joints, IoU >= 0.1, GT with isValid False neither matched nor missed;
  - synthetic (Anny) scenes: matching and joint errors use all of the body model's own joints;
  - matched persons: MPJPE / PA-MPJPE on the 22 body joints (SMPL-X 0-21, SMPL-compatible) centred on
    the pelvis (AGORA: the hip mid-point), PVE / PA-PVE on all vertices centred on each mesh's own pelvis
    joint, when GT vertices exist (BEDLAM/synthetic: rebuilt from the SMPL-X parameters with the model's
    SMPL-X; AGORA: the dataframe's gt_verts; 3DPW: the GT SMPL mesh when ``smpl_dir`` and
    ``smplx2smpl`` are given, predicted SMPL-X vertices mapped by that 6890 x 10475 matrix);
  - errors are averaged per matched person, in millimetres.
Not the exact published protocols: 3DPW's H36M-14 joint regressor and AGORA's hand/face parts need
licensed files and are left out; numbers are comparable between our own checkpoints.
"""
from __future__ import annotations

import logging
import pickle
from pathlib import Path

import numpy as np
import torch

from lighthmr_ros.errors import ConfigError, DatasetError
from lighthmr_ros.training.losses import joint_index_map
from lighthmr_ros.training.metrics import MetricAccumulator, match_2d_greedy, mpjpe, pa_mpjpe
from lighthmr_ros.training.supervision import build_person_targets
from lighthmr_ros.training.targets import NUM_BODY_JOINTS, collate, prepare_sample

log = logging.getLogger(__name__)


def _smpl_folder(path: Path) -> Path:
    """The folder holding SMPL_MALE/SMPL_FEMALE (.pkl without chumpy objects, or .npz): ``path`` or ``path/smpl``."""
    for folder in (path, path / "smpl"):
        if any(folder.glob("SMPL_MALE.*")):
            return folder
    raise DatasetError(f"no SMPL_MALE.pkl/.npz under {path}: download SMPL from https://smpl.is.tue.mpg.de and "
                       "pass its folder as --smpl-dir.")


def _load_smpl(folder: Path, gender: str):
    """smplx.SMPL from SMPL_<GENDER>.npz (arrays; smplx itself only unpickles .pkl) or .pkl."""
    import smplx
    from smplx.utils import Struct

    npz = folder / f"SMPL_{gender.upper()}.npz"
    if npz.is_file():
        with np.load(npz, allow_pickle=False) as z:
            data = Struct(**{k: z[k] for k in z.files})
        return smplx.SMPL(str(folder), data_struct=data, gender=gender)
    return smplx.SMPL(str(folder / f"SMPL_{gender.upper()}.pkl"), gender=gender)


class SMPLGroundTruth:
    """3DPW's GT SMPL meshes (gendered SMPL via smplx) and the SMPL-X -> SMPL vertex matrix."""

    def __init__(self, smpl_dir: str | Path, smplx2smpl: str | Path):
        with open(smplx2smpl, "rb") as f:
            self.matrix = torch.as_tensor(np.asarray(pickle.load(f, encoding="latin1")["matrix"]), dtype=torch.float32)
        folder = _smpl_folder(Path(smpl_dir))
        self.models = {g: _load_smpl(folder, g) for g in ("male", "female")}

    def vertices(self, p: dict) -> tuple[np.ndarray, np.ndarray]:
        """(vertices, root joint) of one actor in the camera frame: V_cam = R (SMPL(theta, beta) + trans) + t."""
        model = self.models.get(p["gender"], self.models["male"])
        pose = torch.as_tensor(p["poses_world"], dtype=torch.float32)[None]
        out = model(global_orient=pose[:, :3], body_pose=pose[:, 3:72], betas=torch.as_tensor(p["betas"], dtype=torch.float32)[None],
                    transl=torch.as_tensor(p["trans_world"], dtype=torch.float32)[None])
        cam = np.asarray(p["cam_pose"])
        R, t = cam[:3, :3], cam[:3, 3]
        v = out.vertices[0].detach().numpy() @ R.T + t
        j0 = out.joints[0, 0].detach().numpy() @ R.T + t
        return v, j0

    def map_prediction(self, vertices: np.ndarray) -> np.ndarray | None:
        if vertices.shape[0] != self.matrix.shape[1]:
            return None
        return (self.matrix @ torch.as_tensor(vertices, dtype=torch.float32)).numpy()


@torch.no_grad()
def evaluate_model(model, reader, size: int | None = None, device="cpu", det_threshold: float = 0.5,
                   nms_kernel: int | None = None, max_humans: int = 20, progress: bool = True, smpl_gt: SMPLGroundTruth | None = None,
                   limit: int | None = None, runner=None) -> dict:
    """Metrics of ``model`` (an HMRModel) over ``reader`` (an HMRDataset).

    ``runner``: what runs the network instead of ``model`` itself (called like it), e.g. the
    onnxruntime backend (``lighthmr_ros.onnx_backend.OnnxHMR``); ``model`` still provides the
    config, the body model for the ground truth and the device."""
    device = torch.device(device)
    model = model.to(device).eval()
    size = size or model.config.image_size
    if size != model.config.image_size:  # the decoder's position queries are sized by the training grid
        raise ConfigError(f"this checkpoint runs at {model.config.image_size} px, not {size}; drop --image-size")
    spec = model.body.spec
    dataset = getattr(reader, "name", "")
    is_agora = dataset == "agora"
    iou = 0.1 if is_agora else 0.05
    body_m, body_s = joint_index_map(spec.joint_names, count=NUM_BODY_JOINTS)
    pelvis = (1, 2) if is_agora else 0  # indices into the 22 body joints
    acc = MetricAccumulator()
    n = len(reader) if limit is None else min(limit, len(reader))
    it = range(n)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc=f"evaluate {dataset}", unit="img")
    for i in it:
        raw = reader[i]
        sample = prepare_sample(raw, size)
        batch = collate([sample], size, select=False)
        det = (runner or model)(batch["images"].to(device), batch["K"].to(device), det_threshold=det_threshold,
                    nms_kernel=nms_kernel, max_humans=max_humans)
        G = len(sample.persons)
        valid = batch["valid"].numpy()
        keep = torch.ones(G, dtype=torch.bool)
        tgt = build_person_targets(batch, keep, model.body, device) if G else None
        if batch.get("native_body") is not None:  # synthetic scenes: the body model's own joints
            if batch["native_body"] != spec.name:
                raise DatasetError(f"these scenes are annotated with the {batch['native_body']} body model but the "
                                   f"checkpoint uses {spec.name}: evaluate a {batch['native_body']} checkpoint on them.")
            eval_joints, root = list(range(spec.num_joints)), spec.pelvis_index
            gt_kps = batch["native_joints_2d"].numpy()
            pred_kps = det.joints_2d.cpu().numpy()
        else:  # 2-D keypoints for matching: GT joints present in both skeletons
            eval_joints, root = body_m, pelvis
            n_match = min(24, batch["joints_2d"].shape[1]) if is_agora else batch["joints_2d"].shape[1]
            jm, js = joint_index_map(spec.joint_names, count=n_match)
            if not jm:
                raise DatasetError(f"the checkpoint's {spec.name} body shares no joints with the SMPL/SMPL-X annotation "
                                   f"of {dataset}: evaluate an SMPL-X checkpoint on it.")
            gt_kps = batch["joints_2d"][:, js].numpy()
            pred_kps = det.joints_2d[:, jm].cpu().numpy()
        matches, false_pos, misses = match_2d_greedy(pred_kps, gt_kps, iou_thresh=iou, valid_gt=valid)
        acc.detection.add(int(valid.sum()), len(misses), len(false_pos))
        for p, g in matches:
            errors = {}
            jmask = tgt.joints_mask[g, eval_joints].cpu().numpy()
            if jmask.all() and eval_joints:
                pj = det.joints[p, eval_joints].cpu().numpy()
                gj = tgt.joints[g, eval_joints].cpu().numpy()
                errors["mpjpe"] = mpjpe(pj, gj, root=root)
                errors["pa_mpjpe"] = pa_mpjpe(pj, gj)
            pv = det.vertices[p].cpu().numpy() if det.vertices is not None else None
            if pv is not None and tgt.vertices is not None and bool(tgt.vertices_mask[g]):
                gv = tgt.vertices[g].cpu().numpy()
                proot = det.joints[p, spec.pelvis_index].cpu().numpy()
                groot = tgt.joints[g, spec.pelvis_index].cpu().numpy()
                errors["pve"] = mpjpe(pv - proot, gv - groot)
                errors["pa_pve"] = pa_mpjpe(pv, gv)
            elif pv is not None and smpl_gt is not None and "smpl" in raw.extras:
                mapped = smpl_gt.map_prediction(pv)
                if mapped is not None:
                    gv, groot = smpl_gt.vertices(raw.extras["smpl"][g])
                    proot = det.joints[p, spec.pelvis_index].cpu().numpy()
                    errors["pve"] = mpjpe(mapped - proot, gv - groot)
                    errors["pa_pve"] = pa_mpjpe(mapped, gv)
            acc.add_person(**errors)
    summary = acc.summary()
    summary.update(dataset=dataset, images=n, det_threshold=det_threshold, iou_threshold=iou)
    return summary


def format_table(summary: dict) -> str:
    """Two-line plain table of the headline numbers."""
    cols = [("MPJPE", "mpjpe"), ("PA-MPJPE", "pa_mpjpe"), ("PVE", "pve"), ("PA-PVE", "pa_pve"),
            ("Precision", "precision"), ("Recall", "recall"), ("F1", "f1")]
    head = " | ".join(f"{name:>9}" for name, _ in cols)
    vals = " | ".join(f"{summary[k]:9.1f}" if summary.get(k) is not None else f"{'n/a':>9}" for _, k in cols)
    info = (f"{summary.get('dataset', '')}: {summary.get('images', 0)} images, {summary.get('num_gt', 0)} people, "
            f"{summary.get('num_matched', 0)} matched, {summary.get('false_positives', 0)} false positives "
            f"(errors in mm, detection in %)")
    return f"{info}\n{head}\n{vals}"


def load_model_for_eval(checkpoint: str, device: str = "cpu", smplx_model_dir: str | None = None):
    from lighthmr_ros.model.checkpoint import load_checkpoint

    return load_checkpoint(checkpoint, device=device, smplx_model_dir=smplx_model_dir)


__all__ = ["evaluate_model", "format_table", "SMPLGroundTruth", "load_model_for_eval"]
