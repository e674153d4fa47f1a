"""BEDLAM (v1) reader: per-scene npz labels + PNG frames.

Format facts relied on (shared/notes/datasets.md section 3; sources pixelite1201/BEDLAM
data_processing/ReadMe.md, df_full_body.py, train/dataset/datasetx.py, visualize_ground_truth.py,
naver/multi-hmr datasets/bedlam.py):
  - labels: ``<root>/all_npz_12_{training,validation}/<scene>.npz``, one row per person per frame,
    keys imgname ('seq_XXXXXX/seq_XXXXXX_NNNN.png'), pose_cam (165: global, body 63, jaw, leye, reye,
    lhand 45, rhand 45 = SMPL-X joint order), shape (11 betas, neutral SMPL-X, flat_hand_mean=True),
    trans_cam (3), cam_ext (4,4), cam_int (3,3), gtkps (127,3 projected SMPL-X joints, pixels);
  - the camera-frame SMPL-X ``transl`` is trans_cam + cam_ext[:3,3] (cam_ext's translation is per person);
  - frames: ``<root>/<split>/<scene>/png/<imgname>`` (Multi-HMR layout) or ``<root>/<scene>/png/<imgname>``
    (the release zips), 1280x720 PNG; scenes with 'closeup' in the name are stored rotated and must be
    turned 90 deg clockwise to the 720x1280 frame that cam_int (cx=360, cy=640) and gtkps refer to;
  - rows of one image share K; group rows by imgname.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

from lighthmr_ros.errors import DatasetError
from lighthmr_ros.training.datasets import HMRDataset, read_rgb
from lighthmr_ros.training.targets import HEAD_JOINT, NUM_SMPLX_POSE_JOINTS, PersonTarget, Sample

SPLIT_DIRS = {"train": "training", "training": "training", "val": "validation", "validation": "validation"}
NPZ_KEYS = ("imgname", "pose_cam", "shape", "trans_cam", "cam_ext", "cam_int", "gtkps")


def bedlam_image_path(root: Path, split_dir: str, scene: str, imgname: str) -> Path:
    for candidate in (
        root / split_dir / scene / "png" / imgname,
        root / scene / "png" / imgname,
        root / split_dir / scene / imgname,
    ):
        if candidate.is_file():
            return candidate
    return root / split_dir / scene / "png" / imgname


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """The label arrays we use. String arrays are plain unicode in the release; an npz that stores them
    as Python objects is read with pickling allowed (the user's own downloaded label file)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in NPZ_KEYS if k not in z.files]
            if missing:
                raise DatasetError(f"{path} lacks BEDLAM keys {missing}: is it an all_npz_12 label file?")
            return {k: z[k] for k in NPZ_KEYS}
    except ValueError:  # "Object arrays cannot be loaded when allow_pickle=False"
        with np.load(path, allow_pickle=True) as z:
            return {k: np.asarray(z[k]) if k != "imgname" else np.asarray(z[k]).astype(str) for k in NPZ_KEYS}


class BedlamDataset(HMRDataset):
    """One item per frame with all its labelled people (SMPL-X params, K, 2-D joints)."""

    name = "bedlam"

    def __init__(self, root, split: str = "train", subsample: int = 1, scenes: list[str] | None = None):
        super().__init__(root, split, subsample)
        split_dir = SPLIT_DIRS.get(split)
        if split_dir is None:
            raise DatasetError(
                f"BEDLAM split {split!r} unknown: use train or validation (test labels are withheld)."
            )
        self.split_dir = split_dir
        label_dir = self.root / f"all_npz_12_{split_dir}"
        if not label_dir.is_dir():
            raise DatasetError(
                f"BEDLAM labels not found at {label_dir}: "
                f"unzip bedlam_labels/all_npz_12_{split_dir}.zip there."
            )
        self._labels: dict[str, dict[str, np.ndarray]] = {}
        for npz_path in sorted(label_dir.glob("*.npz")):
            scene = npz_path.stem
            if scenes and scene not in scenes:
                continue
            data = _read_npz(npz_path)
            self._labels[scene] = data
            rows: dict[str, list[int]] = defaultdict(list)
            for r, name in enumerate(data["imgname"]):
                rows[str(name)].append(r)
            for imgname in sorted(rows):
                self.items.append((scene, imgname, rows[imgname]))
        self._finish_index()

    def load(self, i: int) -> Sample:
        scene, imgname, rows = self.items[i]
        d = self._labels[scene]
        path = bedlam_image_path(self.root, self.split_dir, scene, imgname)
        image = read_rgb(path)
        if "closeup" in scene:
            image = cv2.rotate(image, cv2.ROTATE_90_CLOCKWISE)  # stored rotated; labels are for 720x1280
        K = d["cam_int"][rows[0]].astype(np.float64)
        persons = []
        for r in rows:
            rotvec = d["pose_cam"][r].reshape(NUM_SMPLX_POSE_JOINTS, 3).astype(np.float64)
            kps = d["gtkps"][r].astype(np.float64)
            transl = d["trans_cam"][r].astype(np.float64) + d["cam_ext"][r][:3, 3]
            persons.append(
                PersonTarget(
                    center=kps[HEAD_JOINT, :2].copy(),
                    joints_2d=kps[:NUM_SMPLX_POSE_JOINTS, :2].copy(),
                    joints_2d_valid=np.ones(NUM_SMPLX_POSE_JOINTS, bool),
                    rotvec=rotvec,
                    rot_valid=np.ones(NUM_SMPLX_POSE_JOINTS, bool),
                    shape=d["shape"][r].astype(np.float64),
                    expression=np.zeros(10),  # BEDLAM bodies have neutral (zero) expression
                    transl=transl,
                    body="smplx",
                )
            )
        return Sample(image=image, K=K, persons=persons, name=f"{scene}/{imgname}", dataset="bedlam")
