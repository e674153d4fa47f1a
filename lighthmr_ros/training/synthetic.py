"""Reader of ``lighthmr synth`` scene folders (synthetic people rendered with the Anny body model).

Format: lighthmr_ros/synth/format.py (``meta.json`` + per scene ``NNNNNN.jpg`` and ``NNNNNN.npz``
read by ``load_scene``). Annotations are in Anny's own terms, so persons carry a ``native`` record
(rotations, phenotypes, pelvis position, 3-D/2-D joints with visibility, vertices when written with
``--with-vertices``) that supervises a model whose body model is Anny; the detection centre is the
annotated ``center_2d`` (projected head joint). A model with another body model learns only detection
from these scenes (no joint names in common).
"""

from __future__ import annotations

import numpy as np

from lighthmr_ros.errors import DatasetError
from lighthmr_ros.training.datasets import HMRDataset, read_rgb
from lighthmr_ros.training.targets import PersonTarget, Sample


class SyntheticDataset(HMRDataset):
    """One item per scene; ``split`` 'all' | 'train' (all but the last tenth) | 'val' (the last tenth)."""

    name = "synthetic"

    def __init__(self, root, split: str = "all", subsample: int = 1):
        super().__init__(root, split, subsample)
        from lighthmr_ros.synth import list_scenes, read_meta

        self.meta = read_meta(self.root)
        scenes = list_scenes(self.root)
        cut = len(scenes) - max(1, len(scenes) // 10) if len(scenes) > 1 else len(scenes)
        if split in ("train", "training"):
            scenes = scenes[:cut]
        elif split in ("val", "validation", "test"):
            scenes = scenes[cut:]
        elif split != "all":
            raise DatasetError(f"synthetic split {split!r} unknown: use all, train or val.")
        self.items = scenes
        self.joint_names = tuple(self.meta["joint_names"])
        self.pose_joint_names = tuple(self.meta["pose_joint_names"])
        self._finish_index()

    def load(self, i: int) -> Sample:
        from lighthmr_ros.synth import load_scene

        scene = load_scene(self.items[i])
        image = read_rgb(scene["image_path"])
        K = np.asarray(scene["K"], np.float64)
        persons = []
        verts = scene.get("vertices")
        visible = scene.get("joints_visible")
        for p in range(len(scene["transl"])):
            native = {
                "body": str(scene["body_model"]),
                "joint_names": self.joint_names,
                "pose_joint_names": self.pose_joint_names,
                "rotmats": np.asarray(scene["rotmats"][p], np.float64),
                "shape": np.asarray(scene["shape"][p], np.float64),
                "transl_pelvis": np.asarray(scene["transl_pelvis"][p], np.float64),
                "joints": np.asarray(scene["joints"][p], np.float64),
                "joints_2d": np.asarray(scene["joints_2d"][p], np.float64),
                "joints_visible": np.asarray(visible[p], bool)
                if visible is not None
                else np.ones(len(self.joint_names), bool),
                "vertices": np.asarray(verts[p], np.float64) if verts is not None else None,
            }
            persons.append(
                PersonTarget(
                    center=np.asarray(scene["center_2d"][p], np.float64), body=native["body"], native=native
                )
            )
        return Sample(image=image, K=K, persons=persons, name=self.items[i].name, dataset="synthetic")
