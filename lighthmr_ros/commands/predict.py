"""``lighthmr predict IMAGES... --out DIR``: a JSON per image, a mesh per person, an overlay PNG.

Files per image ``NAME.ext``: ``NAME.json`` (image size, K, model, every person's parameters,
joints and 2D joints), ``NAME_person<i>.obj`` (mesh in the camera frame: x right, y down,
z forward, metres) and ``NAME_overlay.png``.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

from lighthmr_ros.commands import add_model_arguments, model_arguments

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
log = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", help="image files or folders of images")
    parser.add_argument("--out", required=True, help="output folder (created)")
    add_model_arguments(parser)
    parser.add_argument("--threshold", type=float, default=0.5, help="detection threshold (default 0.5)")
    parser.add_argument(
        "--nms-kernel", type=int, default=None, help="max-pool NMS kernel in tokens (default: the model's own)"
    )
    parser.add_argument("--max-humans", type=int, default=20, help="at most this many people per image (default 20)")
    parser.add_argument(
        "--fov", type=_fov, default="auto",
        help="field of view across the larger side without --intrinsics, degrees or 'auto' (default): "
        "the model's own estimate when it has one (Anny teacher), else 60",
    )
    parser.add_argument("--intrinsics", metavar="FX,FY,CX,CY", help="camera intrinsics of the images in pixels")
    parser.add_argument(
        "--mesh-format", choices=["obj", "glb", "none"], default="obj", help="mesh file per person (default obj)"
    )
    parser.add_argument("--no-overlay", action="store_true", help="do not write overlay PNGs")
    parser.add_argument("--json-vertices", action="store_true", help="also put the vertices in the JSON files")


def _fov(text: str) -> float | str:
    return "auto" if text.strip().lower() == "auto" else float(text)


def find_images(inputs: list[str]) -> list[Path]:
    """Files as given, folders expanded to their images (sorted); ImageError for missing paths."""
    from lighthmr_ros.errors import ImageError

    found: list[Path] = []
    for item in inputs:
        p = Path(item).expanduser()
        if p.is_dir():
            found += sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        elif p.is_file():
            found.append(p)
        else:
            raise ImageError(f"{p} does not exist; give image files or folders of images")
    if not found:
        raise ImageError(f"no images found in {', '.join(inputs)} (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    return found


def read_rgb(path: Path) -> np.ndarray:
    """HxWx3 uint8 RGB (EXIF orientation applied); ImageError when unreadable."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    from lighthmr_ros.errors import ImageError

    try:
        with Image.open(path) as im:
            return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    except (UnidentifiedImageError, OSError) as exc:
        raise ImageError(f"cannot read image {path} ({exc}); give a JPEG, PNG or other common image file") from exc


def parse_intrinsics(text: str | None) -> np.ndarray | None:
    from lighthmr_ros.errors import ConfigError

    if not text:
        return None
    try:
        fx, fy, cx, cy = (float(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"--intrinsics must be four numbers FX,FY,CX,CY, got {text!r}") from None
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def write_obj(path: Path, vertices: np.ndarray, faces: np.ndarray) -> None:
    with open(path, "w") as fh:
        fh.write("# lighthmr_ros mesh, camera frame: x right, y down, z forward, metres\n")
        np.savetxt(fh, np.asarray(vertices, dtype=np.float64), fmt="v %.6f %.6f %.6f")
        np.savetxt(fh, np.asarray(faces, dtype=np.int64) + 1, fmt="f %d %d %d")


def write_mesh(path: Path, vertices: np.ndarray, faces: np.ndarray, fmt: str) -> Path:
    if fmt == "obj":
        path = path.with_suffix(".obj")
        write_obj(path, vertices, faces)
    else:
        import trimesh

        path = path.with_suffix(".glb")
        trimesh.Trimesh(vertices, faces, process=False).export(path)
    return path


def run(args: argparse.Namespace) -> int:
    from PIL import Image
    from tqdm import tqdm

    from lighthmr_ros.inference import Predictor
    from lighthmr_ros.overlay import render_overlay

    paths = find_images(args.images)
    K_user = parse_intrinsics(args.intrinsics)
    out = Path(args.out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    pred = Predictor(**model_arguments(args))
    total = 0
    for path in tqdm(paths, desc="predict", unit="image", disable=len(paths) < 2):
        rgb = read_rgb(path)
        h, w = rgb.shape[:2]
        humans, camera = pred.predict_with_camera(
            rgb,
            K=K_user,
            fov_deg=args.fov,
            det_threshold=args.threshold,
            nms_kernel=args.nms_kernel,
            max_humans=args.max_humans,
            with_vertices=args.mesh_format != "none" or not args.no_overlay or args.json_vertices,
        )
        K = camera.K
        records = []
        for hm in humans:
            rec = hm.to_dict(with_vertices=args.json_vertices)
            rec["primary_keypoint"] = np.asarray(
                hm.extras.get("primary_keypoint", hm.translation), dtype=float
            ).tolist()
            if args.mesh_format != "none" and hm.vertices is not None:
                rec["mesh"] = write_mesh(
                    out / f"{path.stem}_person{hm.id}", hm.vertices, pred.faces, args.mesh_format
                ).name
            records.append(rec)
        doc = {
            "image": str(path),
            "width": w,
            "height": h,
            "K": np.asarray(K, dtype=float).tolist(),
            "K_source": camera.source,  # given | fov | estimated (the model's own field of view)
            "model": pred.model.config.name,
            "body_model": pred.body_model_name,
            "joint_names": pred.joint_names,
            "humans": records,
        }
        (out / f"{path.stem}.json").write_text(json.dumps(doc))
        if not args.no_overlay:
            Image.fromarray(render_overlay(rgb, humans, K, pred.faces, pred.joint_parents)).save(
                out / f"{path.stem}_overlay.png"
            )
        total += len(humans)
        log.info("%s: %d people", path.name, len(humans))
    print(f"{len(paths)} image(s), {total} people -> {out}")
    return 0
