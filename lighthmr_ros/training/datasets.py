"""Data set base class, the registry of readers, and the training wrapper that prepares batches.

A reader (``HMRDataset`` subclass) maps an index to a raw ``Sample`` in the original image's pixels;
``TrainingDataset`` letterboxes and augments it to the network size; ``collate`` (targets.py) stacks.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from lighthmr_ros.errors import DatasetError
from lighthmr_ros.training.targets import AugmentConfig, Sample, collate, prepare_sample


class HMRDataset(Dataset):
    """Base reader: subclasses fill ``self.items`` and implement ``load(i) -> Sample``."""

    name = "base"

    def __init__(self, root: str | Path, split: str = "train", subsample: int = 1):
        self.root = Path(root).expanduser()
        self.split = split
        self.subsample = max(1, int(subsample))
        if not self.root.is_dir():
            raise DatasetError(
                f"{self.name} root {self.root} is not a folder: "
                f"pass the folder holding the {self.name} release."
            )
        self.items: list = []

    def _finish_index(self) -> None:
        self.items = self.items[:: self.subsample]
        if not self.items:
            raise DatasetError(
                f"no {self.name} images with annotations found under {self.root} for split "
                f"{self.split!r}: check the folder layout described in lighthmr_ros/training/{self.name}.py."
            )

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Sample:
        return self.load(i)

    def load(self, i: int) -> Sample:
        raise NotImplementedError


def read_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DatasetError(f"cannot read image {path}: the file is missing or not an image.")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


class TrainingDataset(Dataset):
    """Wraps a reader: letterbox to ``size`` with random augmentation (seeded per item and epoch)."""

    def __init__(
        self,
        reader: Dataset,
        size: int,
        augment: AugmentConfig | None = None,
        seed: int = 0,
        teacher_size: int | None = None,
    ):
        self.reader = reader
        self.size = size
        self.teacher_size = teacher_size  # distillation: the same view at the teacher's size
        self.augment = augment
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.reader)

    def __getitem__(self, i: int) -> Sample:
        rng = np.random.default_rng([self.seed, self.epoch, i])
        return prepare_sample(self.reader[i], self.size, self.augment, rng, teacher_size=self.teacher_size)


class ConcatReaders(torch.utils.data.ConcatDataset):
    """Several readers as one (mixing BEDLAM and AGORA, for instance)."""


def make_collate(size: int):
    def _collate(samples: list[Sample]) -> dict:
        return collate(samples, size)

    return _collate


def create_dataset(name: str, root: str | Path, split: str = "train", **options) -> HMRDataset:
    """Reader by name: ``bedlam``, ``3dpw``, ``agora``, ``synthetic`` or ``pseudo`` (teacher labels of
    unlabelled footage, unlabelled.py)."""
    key = name.lower().replace("-", "").replace("_", "")
    if key == "bedlam":
        from lighthmr_ros.training.bedlam import BedlamDataset as cls
    elif key in ("3dpw", "threedpw", "pw3d"):
        from lighthmr_ros.training.threedpw import ThreeDPWDataset as cls
    elif key == "agora":
        from lighthmr_ros.training.agora import AgoraDataset as cls
    elif key in ("synthetic", "synth"):
        from lighthmr_ros.training.synthetic import SyntheticDataset as cls
    elif key in ("pseudo", "unlabelled", "unlabeled"):
        from lighthmr_ros.training.unlabelled import PseudoLabelDataset as cls
    else:
        raise DatasetError(f"unknown data set {name!r}: choose bedlam, 3dpw, agora, synthetic or pseudo.")
    return cls(root, split=split, **options)
