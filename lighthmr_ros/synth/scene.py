"""Random multi-person Anny scenes rendered on the CPU.

Each scene: a camera (field of view, height above the floor, downward tilt, a little roll),
1-6 people (random phenotypes from children to elders, poses within joint limits from
poses.py, any heading, mostly towards the camera) standing on the floor at distances where
they are 15-110 % of the image tall, some placed behind others so that they occlude each
other, simple clothes colours, one directional light plus ambient light, a photo or a textured
room behind. A scene depends only on (seed, index), so scenes can be made in any order or in
parallel and the same seed gives the same files.
"""
from __future__ import annotations

import colorsys
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import roma
import torch
import torch.nn.functional as F

from lighthmr_ros.synth import backgrounds
from lighthmr_ros.synth.format import read_meta, scene_stem, write_meta, write_scene
from lighthmr_ros.synth.poses import PoseSampler, sample_phenotype
from lighthmr_ros.synth.raster import project, rasterize, shade


@dataclass
class SynthConfig:
    width: int = 448
    height: int = 448
    min_people: int = 1
    max_people: int = 6
    fov_deg: tuple[float, float] = (40.0, 75.0)
    min_visible: float = 0.2  # people less visible than this are removed from the scene
    min_height_frac: float = 0.15  # smallest person, as a share of the image height
    with_vertices: bool = False


# ------------------------------------------------------------------ appearance

SKIN = np.array([[255, 224, 196], [241, 194, 125], [224, 172, 105], [198, 134, 66], [141, 85, 36], [92, 51, 23]]) / 255
HAIR = np.array([[20, 15, 10], [60, 40, 25], [110, 75, 40], [200, 170, 100], [150, 60, 30], [200, 200, 200]]) / 255
REGIONS = ("skin", "hair", "eyes", "hands", "torso", "upperarm", "lowerarm", "hips", "shin", "feet")


def vertex_regions(body) -> torch.Tensor:
    """(V,) region index (see REGIONS) of each Anny vertex, from its dominant bone and rest position."""
    anny = body.anny
    labels = list(anny.bone_labels)
    dominant = anny.vertex_bone_indices.gather(1, anny.vertex_bone_weights.argmax(1, keepdim=True)).squeeze(1)
    with torch.no_grad():
        rest = body(body.rest_pose()[None], body.mean_shape()[None])
    verts, joints = rest.vertices[0], rest.joints[0]

    def group(bone: str) -> str:
        base = bone.split(".")[0]
        if base.startswith(("finger", "metacarpal")) or base == "wrist":
            return "hands"
        if base.startswith("toe") or base == "foot":
            return "feet"
        if base == "eye":
            return "eyes"
        table = {"head": "skin", "neck01": "skin", "neck02": "skin", "neck03": "skin", "spine01": "torso",
                 "spine02": "torso", "spine03": "torso", "clavicle": "torso", "shoulder01": "torso",
                 "upperarm01": "upperarm", "upperarm02": "upperarm", "lowerarm01": "lowerarm",
                 "lowerarm02": "lowerarm", "lowerleg01": "shin", "lowerleg02": "shin"}
        return table.get(base, "hips")

    region = torch.tensor([REGIONS.index(group(labels[b])) for b in dominant.tolist()])
    head = joints[labels.index("head")]
    eye_y = joints[labels.index("eye.L"), 1]
    is_head = dominant == labels.index("head")
    hair = is_head & ((verts[:, 1] > eye_y + 0.03) | ((verts[:, 2] < head[2] - 0.0) & (verts[:, 1] > head[1] + 0.0)))
    region[hair] = REGIONS.index("hair")
    return region


def person_colors(rng: np.random.Generator, regions: torch.Tensor, age: float) -> torch.Tensor:
    """(V, 3) per-vertex albedo: skin tone, hair, clothes with random sleeve and leg lengths."""
    skin = SKIN[rng.integers(len(SKIN))] * rng.uniform(0.9, 1.05)
    hair_pool = HAIR if age < 0.85 else HAIR[[0, 1, 5, 5]]
    hair = skin if rng.random() < 0.08 else hair_pool[rng.integers(len(hair_pool))]

    def cloth():
        h, s, v = rng.uniform(0, 1), rng.uniform(0.1, 0.8), rng.uniform(0.15, 0.95)
        return np.array(colorsys.hsv_to_rgb(h, s, v))

    shirt, pants, shoes = cloth(), cloth(), cloth() * 0.5
    sleeves, legs = rng.integers(3), rng.integers(2)  # 0 none, 1 short, 2 long; 0 shorts, 1 long
    table = {
        "skin": skin, "hair": hair, "eyes": np.array([0.15, 0.1, 0.08]), "hands": skin, "torso": shirt,
        "upperarm": shirt if sleeves else skin, "lowerarm": shirt if sleeves == 2 else skin, "hips": pants,
        "shin": pants if legs else skin, "feet": shoes if rng.random() > 0.1 else skin,
    }
    palette = torch.tensor(np.stack([table[r] for r in REGIONS]), dtype=torch.float32)
    colors = palette[regions]
    jitter = torch.from_numpy(rng.uniform(0.94, 1.06, (len(regions), 1))).float()
    return (colors * jitter).clamp(0, 1)


# ------------------------------------------------------------------ camera


def look_rotation(pitch_deg: float, roll_deg: float) -> np.ndarray:
    """World (y up, camera looking along +z before tilting) -> camera optical axes (x right, y down)."""
    p = math.radians(pitch_deg)
    forward = np.array([0.0, -math.sin(p), math.cos(p)])
    right = np.cross(forward, [0.0, 1.0, 0.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    r = math.radians(roll_deg)
    right, down = math.cos(r) * right + math.sin(r) * down, -math.sin(r) * right + math.cos(r) * down
    return np.stack([right, down, forward])


def _rot_y(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


# ------------------------------------------------------------------ scenes


class SceneGenerator:
    """Makes scenes with one Anny body model; ``render(seed, index)`` -> (image, mask, annotation)."""

    def __init__(self, config: SynthConfig | None = None, body=None):
        from lighthmr_ros.body import create_body_model

        self.config = config or SynthConfig()
        self.body = body if body is not None else create_body_model("anny")
        if self.body.spec.name != "anny":
            raise ValueError("synthetic scenes are made with the Anny body model")
        self.poses = PoseSampler(self.body)
        self.regions = vertex_regions(self.body)

    def meta(self, seed: int, count: int) -> dict:
        spec = self.body.spec
        return {
            "body_model": spec.name, "pose_joint_names": list(spec.pose_joint_names),
            "joint_names": list(spec.joint_names), "joint_parents": list(spec.joint_parents),
            "pelvis_index": spec.pelvis_index, "head_index": spec.head_index,
            "phenotypes": list(self.body.phenotype_names), "image_size": [self.config.width, self.config.height],
            "seed": seed, "count": count,
        }

    @torch.no_grad()
    def render(self, seed: int, index: int):
        cfg = self.config
        spec = self.body.spec
        rng = np.random.default_rng([seed, index])
        width, height = cfg.width, cfg.height

        fov = rng.uniform(*cfg.fov_deg)
        focal = max(width, height) / (2 * math.tan(math.radians(fov) / 2))
        K = np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]])
        cam_h = rng.uniform(0.5, 2.6)
        pitch = float(np.clip(rng.normal(4 + 8 * (cam_h - 1.2), 6), -8, 35))
        roll = float(rng.normal(0, 2.5))
        R_wc = look_rotation(pitch, roll)
        cam_c = np.array([0.0, cam_h, 0.0])

        count = int(rng.integers(cfg.min_people, cfg.max_people + 1))
        shapes = np.stack([sample_phenotype(rng) for _ in range(count)])
        rots, styles = zip(*(self.poses.sample(rng) for _ in range(count)))
        rot_w = torch.stack(rots)
        for i in range(count):
            yaw = math.pi + rng.normal(0, 0.9) if rng.random() < 0.65 else rng.uniform(0, 2 * math.pi)
            lean = roma.rotvec_to_rotmat(torch.tensor([rng.normal(0, 0.05), 0.0, rng.normal(0, 0.05)]))
            rot_w[i, 0] = torch.tensor(_rot_y(yaw), dtype=torch.float32) @ lean.float()
        shape_t = torch.tensor(shapes)
        body_w = self.body(rot_w, shape_t)
        verts_w, joints_w = body_w.vertices.double().numpy(), body_w.joints.double().numpy()

        hfov = 2 * math.atan(width / (2 * focal))
        placed: list[tuple[int, np.ndarray, float, float]] = []  # (person, offset, angle, distance)
        for i in range(count):
            feet = verts_w[i, :, 1].min()
            tall = verts_w[i, :, 1].max() - feet
            d_min = max(1.2, focal * tall / (1.1 * height))
            d_max = max(d_min * 1.01, min(16.0, focal * tall / (cfg.min_height_frac * height)))
            for _ in range(30):
                if placed and rng.random() < 0.35:  # behind someone: occlusion
                    _, _, a0, d0 = placed[rng.integers(len(placed))]
                    angle, dist = a0 + rng.normal(0, 0.06), d0 + rng.uniform(0.7, 3.0)
                else:
                    angle = rng.uniform(-0.48, 0.48) * hfov
                    dist = d_min * (d_max / d_min) ** rng.uniform(0, 1)
                offset = np.array([dist * math.sin(angle), -feet, dist * math.cos(angle)])
                if any(np.hypot(*(offset - o)[[0, 2]]) < 0.6 for _, o, _, _ in placed):
                    continue
                head_c = R_wc @ (joints_w[i, spec.head_index] + offset - cam_c)
                if head_c[2] < 0.5:
                    continue
                u, v = (K @ head_c)[:2] / head_c[2]
                if 0 <= u < width and 0 <= v < height:
                    placed.append((i, offset, angle, dist))
                    break

        people = [p[0] for p in placed]
        offsets = np.stack([p[1] for p in placed]) if placed else np.zeros((0, 3))
        verts_c = np.einsum("ij,pvj->pvi", R_wc, verts_w[people] + offsets[:, None] - cam_c)
        joints_c = np.einsum("ij,pkj->pki", R_wc, joints_w[people] + offsets[:, None] - cam_c)
        colors = [person_colors(rng, self.regions, float(shapes[i, 1])) for i in people]

        e, a = math.radians(rng.uniform(25, 80)), rng.uniform(0, 2 * math.pi)
        light_w = np.array([math.cos(e) * math.sin(a), math.sin(e), math.cos(e) * math.cos(a)])
        light_c = torch.tensor(R_wc @ light_w, dtype=torch.float32)
        ambient, diffuse = rng.uniform(0.3, 0.55), rng.uniform(0.45, 0.8)

        Kt = torch.tensor(K, dtype=torch.float32)
        keep = list(range(len(people)))
        while True:  # drop people (almost) hidden by others, then render again
            frags, owner, verts_t, faces_t = self._raster(verts_c[keep], Kt, width, height)
            vis_frac = self._visible_fraction(verts_t, owner, frags.depth, Kt, len(keep), width, height)
            low = [k for k, f in zip(keep, vis_frac) if f < cfg.min_visible]
            if not low:
                break
            keep = [k for k in keep if k not in low]

        bg_brightness = rng.uniform(0.6, 1.1)
        if rng.random() < 0.5:
            ground = [(offsets[k, 0], offsets[k, 2]) for k in keep]
            background = backgrounds.room_background(rng, width, height, K, R_wc, cam_c, ground)
        else:
            background = backgrounds.photo_background(rng, width, height)
        background = background * bg_brightness
        if keep:
            col = torch.cat([colors[k] for k in keep])
            rgb, mask = shade(frags, verts_t, faces_t, col, light_c, ambient=ambient, diffuse=diffuse)
            alpha = F.avg_pool2d(mask.float()[None, None], 3, stride=1, padding=1)[0, 0] * mask  # soft edges inside
            alpha = torch.maximum(alpha, F.avg_pool2d(mask.float()[None, None], 3, stride=1, padding=1)[0, 0] * 0.5)
            image = background * (1 - alpha[..., None]) + rgb * alpha[..., None]
            # where alpha spills outside the mask, use the nearest person colour (a dilation of rgb)
            spill = (alpha > 0) & ~mask
            if spill.any():
                dil = F.max_pool2d(rgb.permute(2, 0, 1)[None], 3, stride=1, padding=1)[0].permute(1, 2, 0)
                image[spill] = background[spill] * (1 - alpha[spill, None]) + dil[spill] * alpha[spill, None]
        else:
            image = background
        gamma = rng.uniform(0.85, 1.15)
        image = image.clamp(0, 1) ** gamma
        image = image + torch.from_numpy(rng.normal(0, rng.uniform(0, 0.02), image.shape)).float()
        image_u8 = (image.clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy()
        mask_u8 = (owner + 1).to(torch.uint8).numpy()

        sel = [people[k] for k in keep]
        rotmats = rot_w[sel].clone()
        rotmats[:, 0] = torch.tensor(R_wc, dtype=torch.float32) @ rotmats[:, 0]
        j3 = torch.tensor(joints_c[keep], dtype=torch.float32)
        j2 = project(j3, Kt)
        jvis = self._joint_visibility(j3, j2, owner, frags.depth, width, height)
        v3 = torch.tensor(verts_c[keep], dtype=torch.float32)
        v2 = project(v3, Kt)
        ann = {
            "K": K.astype(np.float32), "width": np.int64(width), "height": np.int64(height),
            "fov_deg": np.float32(fov), "camera_height": np.float32(cam_h), "camera_pitch_deg": np.float32(pitch),
            "camera_roll_deg": np.float32(roll), "R_world_to_camera": R_wc.astype(np.float32),
            "camera_center": cam_c.astype(np.float32), "body_model": spec.name,
            "rotmats": rotmats.numpy(), "pose": roma.rotmat_to_rotvec(rotmats).numpy(),
            "shape": shapes[sel].astype(np.float32), "expression": np.zeros((len(sel), 0), np.float32),
            "transl_pelvis": j3[:, spec.pelvis_index].numpy(), "transl": j3[:, spec.head_index].numpy(),
            "center_2d": j2[:, spec.head_index].numpy(), "joints": j3.numpy(), "joints_2d": j2.numpy(),
            "joints_visible": jvis.numpy(),
            "bbox": torch.cat([v2.amin(1), v2.amax(1)], 1).numpy() if keep else np.zeros((0, 4), np.float32),
            "visible_fraction": np.asarray(vis_frac, dtype=np.float32).reshape(len(keep)),
            "style": np.array([styles[i] for i in sel], dtype=str).reshape(len(sel)),
            "seed": np.int64(seed), "index": np.int64(index),
        }
        if cfg.with_vertices:
            ann["vertices"] = v3.numpy().astype(np.float16)
        return image_u8, mask_u8, ann

    def _raster(self, verts_c: np.ndarray, K: torch.Tensor, width: int, height: int):
        faces = self.body.faces
        num_v = verts_c.shape[1] if len(verts_c) else 0
        verts_t = torch.tensor(verts_c.reshape(-1, 3), dtype=torch.float32)
        faces_t = torch.cat([faces + p * num_v for p in range(len(verts_c))]) if len(verts_c) else faces[:0]
        screen = torch.cat([project(verts_t, K), verts_t[:, 2:]], 1)
        frags = rasterize(screen, faces_t, height, width)
        owner = torch.where(frags.face >= 0, frags.face // faces.shape[0], torch.full_like(frags.face, -1))
        return frags, owner, verts_t, faces_t

    @staticmethod
    def _hidden(points: torch.Tensor, uv: torch.Tensor, person: torch.Tensor, owner, depth, width, height):
        """inside-image and hidden-by-another-person flags of points (N, 3) projected at uv (N, 2)."""
        px, py = uv[:, 0].floor().long(), uv[:, 1].floor().long()
        inside = (px >= 0) & (px < width) & (py >= 0) & (py < height) & (points[:, 2] > 0)
        pxc, pyc = px.clamp(0, width - 1), py.clamp(0, height - 1)
        who, front = owner[pyc, pxc], depth[pyc, pxc]
        hidden = (who >= 0) & (who != person) & (front < points[:, 2] - 0.02)
        return inside, hidden

    def _visible_fraction(self, verts_t, owner, depth, K, count, width, height) -> list[float]:
        if count == 0:
            return []
        person = torch.arange(count).repeat_interleave(verts_t.shape[0] // count)
        inside, hidden = self._hidden(verts_t, project(verts_t, K), person, owner, depth, width, height)
        ok = (inside & ~hidden).float().view(count, -1)
        return ok.mean(1).tolist()

    def _joint_visibility(self, j3, j2, owner, depth, width, height) -> torch.Tensor:
        if j3.shape[0] == 0:
            return torch.zeros(0, j3.shape[1], dtype=torch.bool)
        person = torch.arange(j3.shape[0]).repeat_interleave(j3.shape[1])
        inside, hidden = self._hidden(j3.reshape(-1, 3), j2.reshape(-1, 2), person, owner, depth, width, height)
        return (inside & ~hidden).view(j3.shape[:2])


_worker: SceneGenerator | None = None


def _init_worker(config: SynthConfig) -> None:
    global _worker
    torch.set_num_threads(1)
    _worker = SceneGenerator(config)


def _render_one(job: tuple[str, int, int]) -> tuple[float, int]:
    out, seed, index = job
    t0 = time.perf_counter()
    image, mask, ann = _worker.render(seed, index)
    write_scene(Path(out), index, image, mask, ann)
    return time.perf_counter() - t0, len(ann["shape"])


def generate_scenes(out: str | Path, count: int, seed: int = 0, config: SynthConfig | None = None,
                    progress: bool = True, start: int = 0, workers: int = 1) -> dict:
    """Write scenes start..start+count-1 of ``seed`` into ``out``; returns counts and timings.

    Each worker process renders with one torch thread (the rasteriser's many small tensor
    operations gain nothing from more); the files do not depend on the number of workers.
    """
    from tqdm import tqdm

    config = config or SynthConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(str(out), seed, index) for index in range(start, start + count)]
    times: list[float] = []
    people = 0
    wall = time.perf_counter()
    if workers <= 1:
        threads = torch.get_num_threads()
        try:
            _init_worker(config)
            write_meta(out, _worker.meta(seed, start + count))
            for job in tqdm(jobs, desc="synth", unit="scene", disable=not progress):
                seconds, n = _render_one(job)
                times.append(seconds)
                people += n
        finally:
            torch.set_num_threads(threads)
    else:
        import multiprocessing as mp

        write_meta(out, SceneGenerator(config).meta(seed, start + count))
        with mp.get_context("spawn").Pool(workers, initializer=_init_worker, initargs=(config,)) as pool:
            for seconds, n in tqdm(pool.imap(_render_one, jobs), total=len(jobs), desc="synth", unit="scene",
                                   disable=not progress):
                times.append(seconds)
                people += n
    meta = read_meta(out)
    meta["count"] = len(list(out.glob("[0-9]*.npz")))
    write_meta(out, {k: v for k, v in meta.items() if k not in ("format", "version")})
    return {"scenes": count, "people": people, "seconds_per_scene": float(np.mean(times)) if times else 0.0,
            "wall_seconds": time.perf_counter() - wall, "folder": str(out), "first": scene_stem(start)}
