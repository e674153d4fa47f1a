"""AGORA reader: per-split ground-truth dataframes (pandas pickles) + per-person SMPL-X fits.

Format facts relied on (shared/notes/datasets.md section 2; sources pixelite1201/agora_evaluation
docs/gt_dataframe.md, agora_evaluation/projection.py, get_joints_verts_from_dataframe.py, and
open-mmlab/mmhuman3d data_converters/agora.py):
  - dataframes ``{train,validation}_{0..9}_withjv.pkl`` (``pandas.read_pickle``), one row per image;
    per-person columns are lists: gt_joints_2d (127,2) in 3840x2160 pixels, gt_joints_3d (127,3) and
    gt_verts (10475,3) in the camera frame (metres, OpenCV axes), isValid, occlusion, kid, gender,
    Yaw, X/Y/Z (cm), gt_path_smplx (an '.obj' path: the fit is the same path with '.pkl');
    scalars camX/camY/camZ/camYaw (cm, degrees);
  - images: ``imgPath`` names the 3840x2160 PNG; the 1280x720 copy adds ``_1280x720`` before '.png';
    2-D joints and K scale by W/3840 (720/2160 for the small copies);
  - camera: sensor 36 x 20.25 mm, c = (W/2, H/2), fx = f_mm/36 W, fy = f_mm/20.25 H with f_mm 50
    ('hdri', pitch 0), 18 ('cam00'..'cam03', pitch 30, yaw 135/-135/-45/45), 28 ('ag2', pitch 15),
    else 28 (pitch 0, camYaw from the row);
  - fits (pickle, latin1, values may be torch tensors): global_orient (1,3), body_pose (1,63),
    jaw/leye/reye_pose (1,3), left/right_hand_pose (1,45, NOT flat-hand-mean), betas (1,10; kids 11),
    expression (1,10), in the scan's LOCAL frame. The camera transform chain of projection.py is
    X_cam = Rx(pitch) Ry(-camYaw) (Ry(Yaw-90) diag(1,-1,-1) X_smplx + trans - cam_pos), so the
    camera-frame global orientation is Rx(pitch) Ry(-camYaw) Ry(Yaw-90) diag(1,-1,-1) R_go.

Memory: a ``withjv`` dataframe holds every person's 10475 x 3 vertices (GBs per file). Each dataframe is
converted once into a cache of memory-mapped arrays (joints, float32 vertices) plus a small JSON index
(``cache_dir``, default ``<root>/.lighthmr_cache`` or ~/.cache/lighthmr/agora; one process converts
under a file lock, the others
wait), so every rank of a DDP job maps the same pages instead of holding its own copy.

Protocol rule (agora_evaluation): people with ``isValid`` False (occlusion outside 0-90 %) are neither
matched nor missed; in training they are neither detection positives nor negatives (``valid``).
People whose SMPL-X fit file is missing keep their joints and vertices but have no rotation targets;
the reader warns once with the count.

Supervision: rotations of joints 0-24 (body, jaw, eyes; hands are left out because AGORA's hand
poses are relative to the hand mean while our SMPL-X uses flat_hand_mean=True), camera-frame joints and
vertices from the dataframe. Betas of the gendered/kid fits are not neutral-model betas: not
supervised unless ``use_betas=True`` (e.g. with ``fits_dir`` at the neutral-gender refits
``smplx_gt_neutral_gender``, which share the relative paths).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import pickle
from pathlib import Path

import cv2
import numpy as np

from lighthmr_ros.errors import DatasetError
from lighthmr_ros.training.datasets import HMRDataset, read_rgb
from lighthmr_ros.training.targets import HEAD_JOINT, NUM_SMPLX_POSE_JOINTS, PersonTarget, Sample

log = logging.getLogger(__name__)
FULL_WIDTH = 3840
CACHE_VERSION = 1
PERSON_COLUMNS = ("Yaw", "isValid", "gender", "kid", "gt_path_smplx")
SENSOR_MM = (36.0, 20.25)
# (substring of the image name, focal mm, camera yaw deg or None = from the row, pitch deg)
CAMERA_RULES = (
    ("hdri", 50.0, 0.0, 0.0),
    ("cam00", 18.0, 135.0, 30.0),
    ("cam01", 18.0, -135.0, 30.0),
    ("cam02", 18.0, -45.0, 30.0),
    ("cam03", 18.0, 45.0, 30.0),
    ("ag2", 28.0, 0.0, 15.0),
)


def agora_camera(img_name: str, cam_yaw_row: float) -> tuple[float, float, float]:
    """(focal mm, camera yaw deg, camera pitch deg) for an AGORA image name."""
    for key, focal, yaw, pitch in CAMERA_RULES:
        if key in img_name:
            return focal, yaw, pitch
    return 28.0, float(cam_yaw_row), 0.0


def agora_K(focal_mm: float, width: int, height: int) -> np.ndarray:
    return np.array(
        [
            [focal_mm / SENSOR_MM[0] * width, 0.0, width / 2.0],
            [0.0, focal_mm / SENSOR_MM[1] * height, height / 2.0],
            [0.0, 0.0, 1.0],
        ]
    )


def _rot(axis: int, deg: float) -> np.ndarray:
    v = np.zeros(3)
    v[axis] = np.radians(deg)
    return cv2.Rodrigues(v)[0]


def local_to_camera_rotation(yaw_person: float, cam_yaw: float, cam_pitch: float) -> np.ndarray:
    """Rotation part of projection.py's chain from the fit's frame to the camera frame."""
    return _rot(0, cam_pitch) @ _rot(1, -cam_yaw) @ _rot(1, yaw_person - 90.0) @ np.diag([1.0, -1.0, -1.0])


def _array(value) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float64)


def load_fit(path: Path) -> dict[str, np.ndarray] | None:
    if not path.is_file():
        return None
    with open(path, "rb") as f:
        fit = pickle.load(f, encoding="latin1")
    return {
        k: _array(v).reshape(-1)
        for k, v in fit.items()
        if k
        in (
            "global_orient",
            "body_pose",
            "jaw_pose",
            "leye_pose",
            "reye_pose",
            "left_hand_pose",
            "right_hand_pose",
            "betas",
            "expression",
            "transl",
        )
    }


def default_cache_dir(root: Path) -> Path:
    """Beside the data when that folder is writable, else the user's cache (clusters mount data read-only)."""
    if os.access(root, os.W_OK):
        return root / ".lighthmr_cache"
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lighthmr" / "agora"


def _plain(value):
    """JSON-friendly scalar (numpy scalars, tensors, None)."""
    if hasattr(value, "item"):
        return value.item()
    return value if value is None or isinstance(value, (bool, int, float, str)) else str(value)


def _convert_dataframe(path: Path, folder: Path, with_vertices: bool) -> None:
    """One dataframe -> joints_2d, joints_3d (f64) [+ vertices (f32)] .npy, a row a person; index.json"""
    import pandas as pd

    try:
        df = pd.read_pickle(path)
    except Exception as exc:
        raise DatasetError(f"cannot read AGORA dataframe {path} ({exc}).") from exc
    if "imgPath" not in df.columns or "gt_joints_2d" not in df.columns:
        raise DatasetError(
            f"{path} is not an AGORA ground-truth dataframe (no imgPath/gt_joints_2d columns)."
        )
    rows, total = [], 0
    for r in range(len(df)):
        row = df.iloc[r]
        n = len(row["gt_joints_2d"])
        entry = {
            "imgPath": str(row["imgPath"]),
            "camYaw": float(row.get("camYaw", 0.0) or 0.0),
            "start": total,
            "count": n,
        }
        for col in PERSON_COLUMNS:
            if col in df.columns and row[col] is not None:
                entry[col] = [_plain(v) for v in list(row[col])]
        rows.append(entry)
        total += n
    first = df.iloc[0]
    shapes = {
        "joints_2d": (_array(first["gt_joints_2d"][0])[:, :2]).shape,
        "joints_3d": _array(first["gt_joints_3d"][0]).shape,
    }
    columns = {"joints_2d": "gt_joints_2d", "joints_3d": "gt_joints_3d"}
    if with_vertices and "gt_verts" in df.columns:
        shapes["vertices"], columns["vertices"] = _array(first["gt_verts"][0]).shape, "gt_verts"
    folder.mkdir(parents=True, exist_ok=True)
    for name, shape in shapes.items():
        dtype = np.float32 if name == "vertices" else np.float64  # joints exact; vertices are the bulk
        out = np.lib.format.open_memmap(
            folder / f"{name}.npy.tmp", mode="w+", dtype=dtype, shape=(total, *shape)
        )
        for r, entry in enumerate(rows):
            values = df.iloc[r][columns[name]]
            for k in range(entry["count"]):
                a = _array(values[k])
                out[entry["start"] + k] = a[: shape[0], : shape[1]]
        out.flush()
        del out
        os.replace(folder / f"{name}.npy.tmp", folder / f"{name}.npy")
    (folder / "index.json").write_text(json.dumps({"version": CACHE_VERSION, "rows": rows}))


def load_frame_cache(
    path: Path, cache_dir: Path, with_vertices: bool
) -> tuple[list[dict], dict[str, np.ndarray]]:
    """The dataframe's light index and memory-mapped arrays, converting it first if no process has yet."""
    st = path.stat()
    tag = hashlib.sha1(
        f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}:{with_vertices}".encode()
    ).hexdigest()[:12]
    folder = cache_dir / f"{path.stem}-{tag}"
    index = folder / "index.json"
    if not index.is_file():
        cache_dir.mkdir(parents=True, exist_ok=True)
        with open(cache_dir / f"{folder.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one converter; the others wait, then find it done
            if not index.is_file():
                log.info("converting AGORA dataframe %s into %s (once)", path, folder)
                _convert_dataframe(path, folder, with_vertices)
    rows = json.loads(index.read_text())["rows"]
    arrays = {p.stem: np.load(p, mmap_mode="r") for p in folder.glob("*.npy")}
    return rows, arrays


class AgoraDataset(HMRDataset):
    """One item per image; ``resolution`` 1280 uses the ``_1280x720.png`` copies, 3840 the full frames."""

    name = "agora"

    def __init__(
        self,
        root,
        split: str = "train",
        subsample: int = 1,
        resolution: int = 1280,
        use_betas: bool = False,
        with_vertices: bool = True,
        fits_dir: str | None = None,
        cache_dir: str | None = None,
    ):
        super().__init__(root, split, subsample)
        split = {"val": "validation"}.get(split, split)
        frames = sorted(self.root.rglob(f"{split}_*_withjv.pkl"))
        if not frames:
            raise DatasetError(
                f"no AGORA dataframes {split}_*_withjv.pkl under {self.root}: download the SMPL-X "
                "'Camera dataframes' with joints and vertices into it."
            )
        self.resolution = resolution
        self.use_betas = use_betas
        self.with_vertices = with_vertices
        # gt_path_smplx is relative to the release folder (agora_evaluation joins it with the data path);
        # fits_dir points elsewhere, e.g. at the neutral-gender refits (then use_betas=True makes sense)
        self.fits_dir = Path(fits_dir).expanduser() if fits_dir else self.root
        cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir(self.root)
        self._frames: list[tuple[list[dict], dict[str, np.ndarray]]] = []
        people = missing = 0
        for path in frames:
            rows, arrays = load_frame_cache(path, cache, with_vertices)
            self._frames.append((rows, arrays))
            for r, row in enumerate(rows):
                self.items.append((len(self._frames) - 1, r))
                for rel in row.get("gt_path_smplx") or [None] * row["count"]:
                    people += 1
                    missing += rel is None or not self._fit_path(rel).is_file()
        if missing:
            log.warning(
                "AGORA %s: %d of %d people have no SMPL-X fit under %s: their rotations are not supervised "
                "(joints and vertices still are)",
                split,
                missing,
                people,
                self.fits_dir,
            )
        self._images: dict[str, Path] | None = None
        self._finish_index()

    def _fit_path(self, rel: str) -> Path:
        return self.fits_dir / str(rel).replace(".obj", ".pkl")

    def _image_path(self, img_path: str) -> Path:
        name = Path(img_path).name
        if self.resolution == 1280 and "_1280x720" not in name:
            name = name.replace(".png", "_1280x720.png")
        if self._images is None:
            self._images = {p.name: p for p in self.root.rglob("*.png")}
        if name not in self._images:
            raise DatasetError(
                f"AGORA image {name} not found under {self.root}: "
                f"unzip the {self.split} image archives there."
            )
        return self._images[name]

    def _rotations(
        self, fit: dict, yaw: float, cam_yaw: float, pitch: float
    ) -> tuple[np.ndarray, np.ndarray]:
        rotvec = np.zeros((NUM_SMPLX_POSE_JOINTS, 3))
        R = local_to_camera_rotation(yaw, cam_yaw, pitch) @ cv2.Rodrigues(fit["global_orient"][:3])[0]
        rotvec[0] = cv2.Rodrigues(R)[0][:, 0]
        rotvec[1:22] = fit["body_pose"].reshape(21, 3)
        rotvec[22] = fit.get("jaw_pose", np.zeros(3))[:3]
        rotvec[23] = fit.get("leye_pose", np.zeros(3))[:3]
        rotvec[24] = fit.get("reye_pose", np.zeros(3))[:3]
        rotvec[25:40] = fit.get("left_hand_pose", np.zeros(45)).reshape(15, 3)
        rotvec[40:55] = fit.get("right_hand_pose", np.zeros(45)).reshape(15, 3)
        rot_valid = np.zeros(NUM_SMPLX_POSE_JOINTS, bool)
        rot_valid[:25] = True
        return rotvec, rot_valid

    def load(self, i: int) -> Sample:
        f, r = self.items[i]
        rows, arrays = self._frames[f]
        row = rows[r]
        image = read_rgb(self._image_path(row["imgPath"]))
        h, w = image.shape[:2]
        scale = w / FULL_WIDTH
        focal, cam_yaw, pitch = agora_camera(row["imgPath"], row["camYaw"])
        K = agora_K(focal, w, h)
        persons, full_2d = [], []
        for p in range(row["count"]):
            k = row["start"] + p
            j2d = np.asarray(arrays["joints_2d"][k], np.float64) * scale
            j3d = np.asarray(arrays["joints_3d"][k], np.float64)
            full_2d.append(j2d)
            rels = row.get("gt_path_smplx")
            fit = load_fit(self._fit_path(rels[p])) if rels and rels[p] is not None else None
            rotvec = rot_valid = shape = None
            if fit is not None:
                rotvec, rot_valid = self._rotations(fit, float(row["Yaw"][p]), cam_yaw, pitch)
                if self.use_betas:
                    shape = fit["betas"]
            verts = np.asarray(arrays["vertices"][k], np.float64) if "vertices" in arrays else None
            persons.append(
                PersonTarget(
                    center=j2d[HEAD_JOINT].copy(),
                    joints_2d=j2d[:NUM_SMPLX_POSE_JOINTS],
                    joints_2d_valid=np.ones(min(len(j2d), NUM_SMPLX_POSE_JOINTS), bool),
                    joints_3d=j3d[:NUM_SMPLX_POSE_JOINTS],
                    rotvec=rotvec,
                    rot_valid=rot_valid,
                    shape=shape,
                    vertices=verts,
                    valid=bool(row["isValid"][p]) if "isValid" in row else True,
                    gender=str(row["gender"][p]) if "gender" in row else "neutral",
                    kid=bool(row["kid"][p]) if "kid" in row else False,
                    body="smplx",
                )
            )
        return Sample(
            image=image,
            K=K,
            persons=persons,
            name=Path(row["imgPath"]).name,
            dataset="agora",
            extras={"joints_2d_full": full_2d},
        )
