"""Distillation on unlabelled footage: the Anny teacher labels the user's own images, the student learns them.

``lighthmr distill --unlabelled PATH --teacher NAME_OR_CHECKPOINT`` (commands/distill.py) runs:

1. **Frames** (``iter_frames``): a folder of images, a video file (OpenCV's ``VideoCapture``) or one
   image topic of a rosbag (rosbags; raw or compressed), every ``every``-th frame, at most ``max_frames``.
2. **Pseudo-labels, computed once at the start** (``pseudo_label``): the Anny teacher (MultiHMRAnny, its
   own field of view: no K is given) runs once per frame on the shared letterbox at its input size. Each
   detection becomes a ground-truth-like person in the ORIGINAL frame's pixels: its detection centre
   (cell + offset), 3-D joints in the camera frame, 2-D joints, the 6 phenotypes and the head distance
   (its z); the frame's K is the teacher's K mapped back through the letterbox (the FOV it used). Frames
   and labels go to ``<output_dir>/pseudo/`` (``frames/*.png``, ``labels.pt``, ``meta.json``); a rerun
   with the same source and teacher settings reuses them.
   Why once and not on the fly: the teacher is almost all of the cost of a step (ViT-L at 672 px is
   about 20 s a frame on a 2-core CPU), footage does not change between epochs, and labels written in
   the camera frame and original pixels go through the engine's augmentation (scale, shift, flip)
   exactly like real ground truth, so one teacher pass per frame serves every epoch and every view.
   The cost: the student learns the teacher's thresholded detections, not its soft score map.
3. **Training** with the ordinary engine (``train.train``) on the ``pseudo`` reader: detection scores
   and offsets at the teacher's people (every other cell a negative), 3-D / 2-D joints, phenotypes and
   distances through the same targets and losses as synthetic Anny scenes (``native`` annotations).

Joints are matched BY BONE NAME: the teacher's full rig has 163 bones, the student's Anny body 104
joints, all of them named in the teacher's rig. Rotations are not distilled: the teacher's poses use
anny's local-bone parameterisation on its own rig, which the student's rotations do not share; the 3-D
joint positions carry the pose instead. 103 of the student's 104 joints sit where the teacher's same-named
bones do; the student's ``root`` does not (the legacy rig's is 7-9 cm lower), so it is placed from its
children (``body.correspondence.root_from_children``).
Phenotypes are copied as numbers, and the same six numbers do not make the same body in both models: the
teacher's Anny also holds cupsize, firmness and three race weights at 0.5, the student's default Anny has
no such phenotypes. Measured (mean vertex distance, hip-centred, rest pose): 6.4 mm at the mean body,
15-20 mm at height 0 or 1, 24-27 mm at gender 0 or 1, 30 mm at age 1. Fitting the student's phenotypes to
the teacher's mesh would remove it; not done.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from lighthmr_ros.body.correspondence import body_correspondence, root_from_children
from lighthmr_ros.errors import BagError, ConfigError, DatasetError
from lighthmr_ros.model.camera import project
from lighthmr_ros.training.datasets import HMRDataset, read_rgb
from lighthmr_ros.training.targets import PersonTarget, Sample

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
BAG_SUFFIXES = (".mcap", ".db3", ".bag")
# /2: the student's root placed from its children (the first format kept the teacher's root, 7-9 cm off).
LABELS_FORMAT = "lighthmr_ros.pseudo_labels/2"


# ------------------------------------------------------------------------------------------ frames
def source_kind(path: Path) -> str:
    """'bag', 'folder' or 'video' for a path the user gave."""
    if not path.exists():
        raise DatasetError(f"unlabelled source {path} does not exist: pass a folder of images, a video or a bag.")
    if path.is_dir():
        return "bag" if (path / "metadata.yaml").is_file() else "folder"
    return "bag" if path.suffix.lower() in BAG_SUFFIXES else "video"


def iter_frames(
    path: str | Path, topic: str | None = None, every: int = 1, max_frames: int | None = None
) -> Iterator[tuple[str, np.ndarray]]:
    """(name, HxWx3 uint8 RGB) of every ``every``-th frame of a folder, a video or a bag's image topic."""
    path = Path(path).expanduser()
    every = max(1, int(every))
    kind = source_kind(path)
    frames = {"folder": _folder_frames, "video": _video_frames, "bag": _bag_frames}[kind]
    if topic is not None and kind != "bag":
        raise ConfigError(f"--topic is for rosbags, but {path} is a {kind}; drop --topic.")
    n = 0
    for i, item in enumerate(frames(path, topic) if kind == "bag" else frames(path)):
        if i % every:
            continue
        yield item
        n += 1
        if max_frames is not None and n >= max_frames:
            return


def _folder_frames(path: Path) -> Iterator[tuple[str, np.ndarray]]:
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DatasetError(
            f"{path} holds no images ({', '.join(IMAGE_SUFFIXES)}): pass a folder of frames, a video or a bag."
        )
    for f in files:
        yield str(f.relative_to(path)), read_rgb(f)


def _video_frames(path: Path) -> Iterator[tuple[str, np.ndarray]]:
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise DatasetError(
                f"cannot open {path} as a video (OpenCV found no decoder for it); pass a video OpenCV reads "
                f"(mp4, avi, mkv, ...), a folder of images or a bag ({', '.join(BAG_SUFFIXES)})."
            )
        i = 0
        while True:
            ok, bgr = cap.read()
            if not ok or bgr is None:
                break
            yield f"frame_{i:06d}", cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            i += 1
        if i == 0:
            raise DatasetError(f"{path} opened as a video but no frame could be decoded; is the file complete?")
    finally:
        cap.release()


def _bag_frames(path: Path, topic: str | None) -> Iterator[tuple[str, np.ndarray]]:
    from lighthmr_ros.bag.reading import IMAGE_TYPES, _describe, connections_of, iter_messages, open_bag, select_topics
    from lighthmr_ros.ros.image import compressed_msg_to_rgb, image_msg_to_rgb

    reader = open_bag(path)
    try:
        if not topic:
            types = {t: info.msgtype or "?" for t, info in reader.topics.items()}
            raise BagError(
                f"{path} is a bag: name its image topic with --topic; image topics: {_describe(types, IMAGE_TYPES)}."
            )
        sel = select_topics(reader, topic, camera_info_topic="none", copy_topics="none")
        to_rgb = compressed_msg_to_rgb if sel.compressed else image_msg_to_rgb
        n = 0
        for connection, stamp, raw in iter_messages(reader, connections_of(reader, [sel.image])):
            yield f"{stamp}", to_rgb(reader.deserialize(raw, connection.msgtype))
            n += 1
        if n == 0:
            raise BagError(f"topic {sel.image} of {path} holds no messages.")
    finally:
        reader.close()


# ------------------------------------------------------------------------------------------ teacher
def load_anny_teacher(
    name_or_checkpoint: str, image_size: int | None = None, device: str | torch.device = "cpu", seed: int = 0
) -> torch.nn.Module:
    """The frozen Anny teacher: a named architecture (``multihmr_anny_vits14`` ...: seeded random weights,
    for tests and rehearsals) or a checkpoint path or download name (``multiHMR_672_L_anny``)."""
    from lighthmr_ros.model.config import get_config, list_models
    from lighthmr_ros.model.multihmr_anny import MultiHMRAnny

    def not_anny(what: str) -> ConfigError:
        return ConfigError(
            f"unlabelled distillation needs the Anny teacher (multihmr_anny_* or multiHMR_672_L_anny): "
            f"{name_or_checkpoint} is {what}, whose body shares no joints with the student"
        )

    if name_or_checkpoint in list_models():
        family = get_config(name_or_checkpoint).family
        if family != "multihmr_anny":
            raise not_anny(f"a {family} model")
        from lighthmr_ros.model import create_model

        log.warning(
            "unlabelled distillation: teacher %s has random weights (a name, not a checkpoint)", name_or_checkpoint
        )
        state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        kw = {"image_size": image_size} if image_size else {}
        teacher = create_model(name_or_checkpoint, **kw)
        torch.random.set_rng_state(state)
    else:
        from lighthmr_ros.model.checkpoint import load_checkpoint

        if image_size:
            raise ConfigError("--teacher-size is for a named random-weight teacher; a checkpoint brings its own")
        teacher = load_checkpoint(name_or_checkpoint, device="cpu")
    if not isinstance(teacher, MultiHMRAnny):
        raise not_anny(f"a {type(teacher).__name__}")
    teacher = teacher.to(device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


@dataclass
class PseudoLabelSettings:
    det_threshold: float = 0.5
    max_people: int = 20
    batch_size: int = 4
    every: int = 1
    max_frames: int | None = None
    topic: str | None = None


def _student_body(body_name: str):
    if body_name != "anny":
        raise ConfigError(
            f"unlabelled distillation trains an Anny student (model.body_model: anny), not {body_name!r}: "
            "the Anny teacher's joints are matched to the student's by bone name"
        )
    from lighthmr_ros.body.anny_model import AnnyBody

    return AnnyBody()


@torch.no_grad()
def pseudo_label(
    teacher: torch.nn.Module,
    source: str | Path,
    out_dir: str | Path,
    body_name: str = "anny",
    settings: PseudoLabelSettings | None = None,
    teacher_id: str = "",
) -> dict:
    """Run the teacher once over every frame of ``source``; write frames and labels to ``out_dir``.

    Returns the labels' summary (frames, people, mean FOV); reuses ``out_dir`` when it was made from the
    same source with the same settings and teacher."""
    from lighthmr_ros.device import resolve_precision
    from lighthmr_ros.model.checkpoint import atomic_save
    from lighthmr_ros.preprocess import letterbox
    from lighthmr_ros.training.targets import normalise_image

    st = settings or PseudoLabelSettings()
    out = Path(out_dir)
    student = _student_body(body_name)
    joint_names, bones = tuple(student.spec.joint_names), tuple(student.spec.pose_joint_names)
    size = teacher.config.image_size
    meta = {
        "source": str(Path(source).expanduser().resolve()),
        "topic": st.topic,
        "every": st.every,
        "max_frames": st.max_frames,
        "teacher": teacher_id,
        "teacher_image_size": size,
        "det_threshold": st.det_threshold,
        "max_people": st.max_people,
        "body": body_name,
    }
    labels_path = out / "labels.pt"
    if labels_path.is_file():
        old = torch.load(labels_path, map_location="cpu", weights_only=True)
        if old.get("format") == LABELS_FORMAT and old.get("meta") == meta:
            log.info("pseudo-labels in %s reused (same source and teacher)", out)
            return summarise(old)
    tspec = teacher.body.spec
    index = {n: i for i, n in enumerate(tspec.joint_names)}
    missing = [n for n in joint_names if n not in index]
    if missing:
        raise ConfigError(f"the teacher's rig lacks the student's joints {missing[:5]}; cannot match by name")
    jsel = torch.tensor([index[n] for n in joint_names])
    root = student.spec.pelvis_index
    # The teacher's legacy rig puts its root 7-9 cm below the student's: place the student's root from its
    # children instead (root_from_children), in 3-D and in the image.
    moved_root = root not in body_correspondence(teacher.body, student).gt_joints
    device = next(teacher.parameters()).device
    choice = resolve_precision("auto", device)
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(choice.name)
    (out / "frames").mkdir(parents=True, exist_ok=True)
    records: list[dict] = []
    pending: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]] = []

    def flush() -> None:
        x = torch.stack([normalise_image(p[2]) for p in pending]).to(device)
        ctx = (
            torch.autocast(device.type, dtype=dtype)
            if dtype is not None
            else torch.autocast(device.type, enabled=False)
        )
        with ctx:
            det = teacher(x, K=None, det_threshold=st.det_threshold, max_humans=st.max_people, with_vertices=False)
        for b, (name, rgb, _, A3) in enumerate(pending):
            inv = np.linalg.inv(A3)
            rows = (det.batch_index == b).nonzero().flatten().cpu()
            file = f"{len(records):06d}.png"
            cv2.imwrite(str(out / "frames" / file), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))

            def back(uv: torch.Tensor, inv=inv) -> torch.Tensor:  # network pixels -> frame pixels
                uv = uv.double()
                return uv @ torch.from_numpy(inv[:2, :2]).T + torch.from_numpy(inv[:2, 2])

            joints = det.joints[rows].float().cpu()[:, jsel]
            joints_2d = det.joints_2d[rows].float().cpu()[:, jsel]
            shape = det.shape[rows].float().cpu()
            if moved_root and len(rows):
                posed = {n: joints[:, i] for i, n in enumerate(joint_names)}
                joints[:, root] = root_from_children(student, posed, shape)
                joints_2d[:, root] = project(joints[:, root : root + 1].double(), det.K[b].double().cpu())[:, 0].float()
            records.append(
                {
                    "name": name,
                    "file": file,
                    "K": (torch.from_numpy(inv) @ det.K[b].double().cpu()).float(),
                    "fov": float(det.fov[b]),
                    "score": det.score[rows].float().cpu(),
                    "center": back(det.loc[rows].cpu()).float(),
                    "joints": joints,
                    "joints_2d": back(joints_2d).float(),
                    "shape": shape,
                }
            )
        pending.clear()

    for name, rgb in iter_frames(source, st.topic, st.every, st.max_frames):
        square, box = letterbox(rgb, size)
        pending.append((name, rgb, square, box.affine()))
        if len(pending) >= st.batch_size:
            flush()
    if pending:
        flush()
    payload = {
        "format": LABELS_FORMAT,
        "meta": meta,
        "joint_names": list(joint_names),
        "pose_joint_names": list(bones),
        "frames": records,
    }
    atomic_save(payload, labels_path)
    summary = summarise(payload)
    (out / "meta.json").write_text(json.dumps({**meta, **summary}, indent=2))
    log.info("pseudo-labels: %s", summary)
    return summary


def summarise(payload: dict) -> dict:
    frames = payload["frames"]
    people = [len(f["score"]) for f in frames]
    return {
        "frames": len(frames),
        "people": int(sum(people)),
        "frames_with_people": int(sum(p > 0 for p in people)),
        "mean_fov_deg": float(np.degrees(np.mean([f["fov"] for f in frames]))) if frames else None,
    }


# ------------------------------------------------------------------------------------------ reader
class PseudoLabelDataset(HMRDataset):
    """The frames and teacher labels written by ``pseudo_label`` (data set name ``pseudo``).

    ``split``: 'all' | 'train' (all but the last tenth) | 'val' (the last tenth)."""

    name = "pseudo"

    def __init__(self, root, split: str = "all", subsample: int = 1):
        super().__init__(root, split, subsample)
        path = self.root / "labels.pt"
        if not path.is_file():
            raise DatasetError(
                f"{self.root} holds no labels.pt: make it with lighthmr distill --unlabelled (pseudo_label)."
            )
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if payload.get("format") != LABELS_FORMAT:
            older = str(payload.get("format", "")).startswith("lighthmr_ros.pseudo_labels")
            raise DatasetError(
                f"{path} was made by an older lighthmr (its student root is the teacher's, 7-9 cm off): rerun "
                "lighthmr distill --unlabelled to relabel"
                if older
                else f"{path} is not a lighthmr pseudo-label file"
            )
        self.meta = payload["meta"]
        self.joint_names = tuple(payload["joint_names"])
        self.pose_joint_names = tuple(payload["pose_joint_names"])
        frames = payload["frames"]
        cut = len(frames) - max(1, len(frames) // 10) if len(frames) > 1 else len(frames)
        if split in ("train", "training"):
            frames = frames[:cut]
        elif split in ("val", "validation"):
            frames = frames[cut:]
        elif split != "all":
            raise DatasetError(f"pseudo split {split!r} unknown: use all, train or val.")
        self.items = frames
        self._finish_index()

    def load(self, i: int) -> Sample:
        f = self.items[i]
        image = read_rgb(self.root / "frames" / f["file"])
        persons = []
        for p in range(len(f["score"])):
            joints = f["joints"][p].double().numpy()
            native = {
                "body": self.meta["body"],
                "joint_names": self.joint_names,
                "pose_joint_names": self.pose_joint_names,
                "rotmats": None,  # the teacher's local-bone rotations are not the student's (module doc)
                "shape": f["shape"][p].double().numpy(),
                "transl_pelvis": joints[0].copy(),
                "joints": joints,
                "joints_2d": f["joints_2d"][p].double().numpy(),
                "joints_visible": np.isfinite(f["joints_2d"][p].numpy()).all(-1) & (joints[:, 2] > 0),
                "vertices": None,
            }
            persons.append(PersonTarget(center=f["center"][p].double().numpy(), body=native["body"], native=native))
        return Sample(image=image, K=f["K"].double().numpy(), persons=persons, name=f["name"], dataset="pseudo")


# ------------------------------------------------------------------------------------------ measure
@torch.no_grad()
def distance_to_teacher(model: torch.nn.Module, reader: PseudoLabelDataset, device="cpu") -> dict[str, float]:
    """How far the student's outputs are from the teacher's labels on ``reader``'s frames (no augmentation).

    The student is decoded at the teacher's cells. ``score_bce``: detection map against the teacher's
    detections (1 at their cells, 0 elsewhere); ``joints_mm``: root-relative 3-D joints (mean distance);
    ``joints_2d_px``; ``phenotypes_l1``; ``log_dist_l1``: |log distance ratio|."""
    import torch.nn.functional as F

    from lighthmr_ros.training.targets import collate, prepare_sample, token_locations

    was = model.training
    model.eval()
    size = model.config.image_size
    grid = (model.config.grid, model.config.grid)
    sums = {"score_bce": 0.0, "joints_mm": 0.0, "joints_2d_px": 0.0, "phenotypes_l1": 0.0, "log_dist_l1": 0.0}
    frames = persons = 0
    head = model.body.spec.head_index
    for i in range(len(reader)):
        batch = collate([prepare_sample(reader[i], size, None)], size)
        locs, keep, _ = token_locations(batch["center"], batch["batch_index"], 1, grid, size, batch["valid"])
        out = model.forward_train(batch["images"].to(device), batch["K"].to(device), [locs[0].to(device)])
        target = torch.zeros_like(out["score_logits"])
        target[0, locs[0].to(device)] = 1.0
        sums["score_bce"] += float(F.binary_cross_entropy_with_logits(out["score_logits"].float(), target))
        frames += 1
        n = int(keep.sum())
        if not n:
            continue
        tj = batch["native_joints"][keep].to(device)
        tj2 = batch["native_joints_2d"][keep].to(device)
        pj = out["joints"].float()
        rel = (pj - pj[:, :1]) - (tj - tj[:, :1])
        sums["joints_mm"] += float(rel.norm(dim=-1).mean(-1).sum()) * 1000
        sums["joints_2d_px"] += float((out["joints_2d"].float() - tj2).norm(dim=-1).mean(-1).sum())
        sums["phenotypes_l1"] += float(
            (out["shape"].float() - batch["native_shape"][keep].to(device)).abs().mean(-1).sum()
        )
        sums["log_dist_l1"] += float(
            (out["dist"].float().clamp(min=1e-3).log() - tj[:, head, 2].clamp(min=1e-3).log()).abs().sum()
        )
        persons += n
    model.train(was)
    result = {"score_bce": sums["score_bce"] / max(1, frames), "frames": frames, "persons": persons}
    for k in ("joints_mm", "joints_2d_px", "phenotypes_l1", "log_dist_l1"):
        result[k] = sums[k] / persons if persons else float("nan")
    return result


# ------------------------------------------------------------------------------------------ the command
def distill_unlabelled(
    cfg,
    source: str | Path,
    teacher: str,
    teacher_size: int | None = None,
    settings: PseudoLabelSettings | None = None,
) -> dict:
    """Pseudo-label ``source`` with ``teacher`` (once), then train ``cfg``'s student on those labels."""
    from lighthmr_ros.device import resolve_device
    from lighthmr_ros.training.config import DataSource
    from lighthmr_ros.training.train import train

    pseudo_dir = Path(cfg.run.output_dir) / "pseudo"
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError(
            "lighthmr distill --unlabelled runs in one process (it writes the pseudo-labels first); to train "
            f"them on several GPUs afterwards, use a config whose data.train is {{dataset: pseudo, root: "
            f"{pseudo_dir}}} under torchrun"
        )
    next(iter_frames(source, settings.topic if settings else None, 1, 1))  # bad sources fail before the teacher loads
    device = resolve_device(cfg.run.device, fallback=True)
    model = load_anny_teacher(teacher, teacher_size, device, seed=cfg.run.seed)
    summary = pseudo_label(
        model, source, pseudo_dir, cfg.model.body_model, settings, teacher_id=f"{teacher}@{model.config.image_size}"
    )
    del model
    cfg.data.train = [DataSource(dataset="pseudo", root=str(pseudo_dir), split="all")]
    cfg.data.val = []
    cfg.teacher = None  # the teacher's work is in the labels: the engine trains on them as ground truth
    result = train(cfg)
    result["pseudo_labels"] = {"folder": str(pseudo_dir), **summary}
    return result


__all__ = [
    "PseudoLabelDataset",
    "PseudoLabelSettings",
    "distance_to_teacher",
    "distill_unlabelled",
    "iter_frames",
    "load_anny_teacher",
    "pseudo_label",
]
