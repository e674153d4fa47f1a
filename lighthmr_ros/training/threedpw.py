"""3DPW reader: per-sequence pickles + JPEG frames. Ground truth is SMPL, not SMPL-X.

Format facts relied on (shared/notes/datasets.md section 1; sources: the 3DPW readme, nkolot/SPIN
datasets/preprocess/pw3d.py, naver/multi-hmr datasets/threedpw.py):
  - ``<root>/sequenceFiles/{train,validation,test}/<seq>.pkl`` (Python-2 pickles: encoding='latin1')
    and ``<root>/imageFiles/<seq>/image_%05d.jpg``; the image index k is the 30 Hz index into
    ``poses[i]`` (NOT img_frame_ids, which index 60 Hz data); image sizes vary: read them from the file;
  - per actor i: poses[i] (N,72) SMPL axis-angle in the WORLD frame, betas[i] (use [:10]), trans[i] (N,3),
    jointPositions[i] (N,72) = 24 SMPL joints in the world frame, campose_valid[i] (N,), genders[i] 'm'/'f';
    per sequence: cam_poses (N,4,4) world->camera [R|t] per frame, cam_intrinsics (3,3);
  - camera frame: go_cam = R go_world, X_cam = R X_world + t; every actor with campose_valid == 1 is
    ground truth in that frame.

How the SMPL ground truth is used with an SMPL-X network:
  - training: SMPL joints 0-21 (pelvis..wrists) are the same kinematic joints as SMPL-X 0-21, so the
    22 local rotations (global orientation made camera-frame) supervise the first 22 SMPL-X rotations,
    and the 22 joint positions (camera frame) supervise 3-D joints and their 2-D reprojection. SMPL betas
    are not SMPL-X betas and SMPL 22/23 are hand joints with no SMPL-X counterpart: they are not
    supervised (no shape, expression, hand, vertex or ``transl`` targets). SMPL and SMPL-X regress
    joints slightly differently (about a centimetre): an accepted bias of the joint-only route.
  - evaluation: with the user's SMPL models, J_regressor_h36m.npy and smplx2smpl.pkl, the standard
    protocol of the published tables (pw3d_protocol.py); with this file alone, MPJPE / PA-MPJPE on the
    22 shared joints, labelled as not comparable. The raw SMPL parameters are kept in ``Sample.extras``.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import cv2
import numpy as np

from lighthmr_ros.errors import DatasetError
from lighthmr_ros.training.datasets import HMRDataset, read_rgb
from lighthmr_ros.training.targets import (
    HEAD_JOINT,
    NUM_BODY_JOINTS,
    NUM_SMPLX_POSE_JOINTS,
    PersonTarget,
    Sample,
    project_points,
)

PKL_KEYS = ("poses", "betas", "trans", "jointPositions", "cam_poses", "campose_valid", "cam_intrinsics")


def load_sequence(path: Path) -> dict:
    """One sequence pickle (Python 2, latin1) with the keys we rely on checked."""
    try:
        with open(path, "rb") as f:
            seq = pickle.load(f, encoding="latin1")
    except Exception as exc:
        raise DatasetError(
            f"cannot read 3DPW sequence file {path} ({exc}): re-extract sequenceFiles.zip."
        ) from exc
    missing = [k for k in PKL_KEYS if k not in seq]
    if missing:
        raise DatasetError(f"{path} lacks 3DPW keys {missing}: is it a 3DPW sequenceFiles pickle?")
    return seq


class ThreeDPWDataset(HMRDataset):
    """One item per frame holding at least one valid actor."""

    name = "3dpw"

    def __init__(self, root, split: str = "test", subsample: int = 1, sequences: list[str] | None = None):
        super().__init__(root, split, subsample)
        split = {"val": "validation"}.get(split, split)
        seq_dir = self.root / "sequenceFiles" / split
        if not seq_dir.is_dir():
            raise DatasetError(
                f"3DPW sequence files not found at {seq_dir}: unzip sequenceFiles.zip into {self.root}."
            )
        self._seqs: dict[str, dict] = {}
        for path in sorted(seq_dir.glob("*.pkl")):
            name = path.stem
            if sequences and name not in sequences:
                continue
            seq = load_sequence(path)
            self._seqs[name] = seq
            valid = np.stack([np.asarray(v).reshape(-1) for v in seq["campose_valid"]])  # (A, N)
            n_frames = min(valid.shape[1], len(seq["cam_poses"]))
            for k in range(n_frames):
                actors = [a for a in range(valid.shape[0]) if valid[a, k] > 0]
                if actors:
                    self.items.append((name, k, actors))
        self._finish_index()

    def load(self, i: int) -> Sample:
        name, k, actors = self.items[i]
        seq = self._seqs[name]
        image = read_rgb(self.root / "imageFiles" / name / f"image_{k:05d}.jpg")
        K = np.asarray(seq["cam_intrinsics"], np.float64)
        cam = np.asarray(seq["cam_poses"][k], np.float64)
        R, t = cam[:3, :3], cam[:3, 3]
        persons, smpl = [], []
        for a in actors:
            pose = np.asarray(seq["poses"][a][k], np.float64).reshape(24, 3)
            joints_world = np.asarray(seq["jointPositions"][a][k], np.float64).reshape(24, 3)
            joints_cam = joints_world[:NUM_BODY_JOINTS] @ R.T + t
            joints_2d = project_points(joints_cam, K)
            rotvec = np.zeros((NUM_SMPLX_POSE_JOINTS, 3))
            rotvec[:NUM_BODY_JOINTS] = pose[:NUM_BODY_JOINTS]
            go_cam, _ = cv2.Rodrigues(R @ cv2.Rodrigues(pose[0])[0])
            rotvec[0] = go_cam[:, 0]
            rot_valid = np.zeros(NUM_SMPLX_POSE_JOINTS, bool)
            rot_valid[:NUM_BODY_JOINTS] = True
            gender = str(seq["genders"][a]) if "genders" in seq else "neutral"
            persons.append(
                PersonTarget(
                    center=joints_2d[HEAD_JOINT].copy(),
                    joints_2d=joints_2d,
                    joints_2d_valid=joints_cam[:, 2] > 0,
                    joints_3d=joints_cam,
                    rotvec=rotvec,
                    rot_valid=rot_valid,
                    gender={"m": "male", "f": "female"}.get(gender, gender),
                    body="smpl",
                )
            )
            smpl.append(
                {
                    "poses_world": pose.reshape(72),
                    "betas": np.asarray(seq["betas"][a], np.float64).reshape(-1)[:10],
                    "trans_world": np.asarray(seq["trans"][a][k], np.float64).reshape(3),
                    "cam_pose": cam,
                    "gender": persons[-1].gender,
                }
            )
        return Sample(
            image=image,
            K=K,
            persons=persons,
            name=f"{name}/image_{k:05d}.jpg",
            dataset="3dpw",
            extras={"smpl": smpl},
        )
