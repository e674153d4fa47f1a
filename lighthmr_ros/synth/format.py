"""On-disk format of synthetic scenes (``lighthmr synth``), with its writer and reader.

A scene folder holds ``meta.json`` and, per scene i, four files named by the 6-digit index:

- ``000123.jpg``: the RGB image (width x height, JPEG quality 95).
- ``000123_mask.png``: uint8 person-index map (0 = background, p + 1 = person p as seen).
- ``000123_depth.png``: the true depth map aligned with the image, 16-bit millimetres along the
  optical axis like an RGB-D camera's 16UC1 image (0 = nothing to measure: a photo backdrop, the
  sky, or beyond 65.5 m). Folders written before depth maps existed lack it (``depth_path`` None).
- ``000123.npz``: the annotation, numpy arrays; P people, J pose rotations, S shape values,
  K output joints (see meta.json for the names), all 3D values in the camera optical frame
  (x right, y down, z forward, metres):

  ===================  ================  =====================================================
  key                  shape / dtype     meaning
  ===================  ================  =====================================================
  image, mask, depth   str               file names of the image, person-index map, depth map
  K                    (3, 3) f32        intrinsics (pixels)
  width, height        () i64            image size
  fov_deg              () f32            field of view over the larger image side
  camera_height        () f32            camera height above the floor (m)
  camera_pitch_deg     () f32            downward tilt; camera_roll_deg () f32: roll
  R_world_to_camera    (3, 3) f32        world (y up, floor y = 0) -> camera rotation
  camera_center        (3,) f32          camera centre in the world frame
  body_model           str               "anny"
  rotmats              (P, J, 3, 3) f32  body-model rotations; rotmats[:, 0] is the global
                                         orientation in the camera frame (canonical body ->
                                         camera), the others as the body model defines them
  pose                 (P, J, 3) f32     the same rotations as axis-angle vectors
  shape                (P, S) f32        Anny phenotypes (gender, age, muscle, weight, height,
                                         proportions)
  expression           (P, 0) f32        empty for Anny
  transl_pelvis        (P, 3) f32        pelvis (joint 'root') position: camera-frame vertices =
                                         body(rotmats, shape).vertices - pelvis + transl_pelvis
  transl               (P, 3) f32        primary keypoint ('head' joint) position
  center_2d            (P, 2) f32        its projection (pixels): the detection centre
  joints               (P, K, 3) f32     3D joints
  joints_2d            (P, K, 2) f32     their projections (pixels)
  joints_visible       (P, K) bool       inside the image and not hidden by another person
                                         (self-occlusion is not counted)
  bbox                 (P, 4) f32        x0, y0, x1, y1 of the projected mesh (may leave the image)
  visible_fraction     (P,) f32          share of the person's vertices inside the image and not
                                         hidden by another person
  style                (P,) str          pose style used (stand, walk, free, crouch, reach)
  seed, index          () i64            generator seed and scene index
  vertices             (P, V, 3) f16     only with ``--with-vertices``
  ===================  ================  =====================================================

``meta.json``: format name and version, body model, pose joint names, joint names and
parents, phenotype names, image size, seed (of the last run), count (scene files in the folder).
People whose visible fraction would fall under the generator's threshold are left out of both
the image and the annotation, so every annotated person can be seen.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from lighthmr_ros.errors import DatasetError

FORMAT = "lighthmr-synth"
VERSION = 1


def scene_stem(index: int) -> str:
    return f"{index:06d}"


def write_meta(root: Path, meta: dict) -> None:
    (root / "meta.json").write_text(json.dumps({"format": FORMAT, "version": VERSION, **meta}, indent=1))


def read_meta(root: str | Path) -> dict:
    path = Path(root) / "meta.json"
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path} is missing or unreadable: generate scenes with "
                           f"`lighthmr synth --out {root}`.") from exc
    if meta.get("format") != FORMAT:
        raise DatasetError(f"{path} is not a lighthmr synth folder (format {meta.get('format')!r}).")
    return meta


def depth_to_millimetres(depth_m: np.ndarray) -> np.ndarray:
    """Depth in metres -> uint16 millimetres, 0 where unknown, not positive or beyond 65.535 m."""
    depth = np.asarray(depth_m, dtype=np.float64)
    mm = np.where(np.isfinite(depth) & (depth > 0), np.round(depth * 1000.0), 0.0)
    return np.where(mm <= 65535, mm, 0).astype(np.uint16)


def write_scene(root: Path, index: int, image: np.ndarray, mask: np.ndarray, annotation: dict,
                depth: np.ndarray | None = None) -> Path:
    """Write one scene (image HxWx3 uint8, mask HxW uint8, annotation arrays, depth HxW metres or None).

    Returns the npz path.
    """
    from PIL import Image

    stem = scene_stem(index)
    Image.fromarray(image).save(root / f"{stem}.jpg", quality=95)
    Image.fromarray(mask).save(root / f"{stem}_mask.png")
    names = {"image": f"{stem}.jpg", "mask": f"{stem}_mask.png"}
    if depth is not None:
        if np.shape(depth) != np.shape(mask):
            raise DatasetError(f"depth map {np.shape(depth)} does not match the image size {np.shape(mask)}.")
        Image.fromarray(depth_to_millimetres(depth)).save(root / f"{stem}_depth.png")
        names["depth"] = f"{stem}_depth.png"
    path = root / f"{stem}.npz"
    tmp = root / f".{stem}.tmp.npz"
    np.savez_compressed(tmp, **names, **annotation)
    tmp.replace(path)
    return path


def list_scenes(root: str | Path) -> list[Path]:
    """The annotation files of a scene folder, in index order."""
    root = Path(root)
    read_meta(root)
    return sorted(p for p in root.glob("[0-9]*.npz"))


def load_scene(path: str | Path, with_image: bool = False) -> dict:
    """Read one scene's annotation (path of its .npz, its .jpg or its stem) as a dict of arrays.

    Adds ``image_path``, ``mask_path`` and ``depth_path`` (absolute; None without a depth map)
    and, with ``with_image``, ``image_rgb`` (HxWx3 uint8). String fields come back as Python str
    (``style`` as a list). Read the depth map with ``read_depth``.
    """
    path = Path(path)
    npz = path.with_suffix(".npz") if path.suffix in (".jpg", ".png", "") else path
    try:
        with np.load(npz, allow_pickle=False) as data:
            scene = {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{npz} is not a readable synthetic-scene annotation: "
                           "regenerate it with `lighthmr synth`.") from exc
    for key in ("image", "mask", "depth", "body_model"):
        if key in scene:
            scene[key] = str(scene[key])
    scene["style"] = [str(s) for s in scene.get("style", [])]
    scene["image_path"] = npz.parent / scene["image"]
    scene["mask_path"] = npz.parent / scene["mask"]
    scene["depth_path"] = npz.parent / scene["depth"] if "depth" in scene else None
    if with_image:
        from PIL import Image

        try:
            scene["image_rgb"] = np.asarray(Image.open(scene["image_path"]).convert("RGB"))
        except OSError as exc:
            raise DatasetError(f"{scene['image_path']} is missing or unreadable: "
                               "regenerate the scene.") from exc
    return scene


def read_depth(path: str | Path) -> np.ndarray:
    """A scene's depth map (``depth_path``): uint16 (H, W) millimetres, as an RGB-D camera sends it."""
    from PIL import Image

    try:
        depth = np.asarray(Image.open(path))
    except OSError as exc:
        raise DatasetError(f"{path} is missing or unreadable: "
                           "regenerate the scene with `lighthmr synth`.") from exc
    if depth.ndim != 2 or depth.dtype not in (np.uint16, np.int32):
        raise DatasetError(f"{path} is not a 16-bit depth map (got {depth.dtype}, shape {depth.shape}).")
    return depth.astype(np.uint16)
