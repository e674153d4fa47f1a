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

from lighthmr_ros.raster import project, rasterize, shade
from lighthmr_ros.synth import backgrounds
from lighthmr_ros.synth.format import read_meta, scene_stem, write_meta, write_scene
from lighthmr_ros.synth.poses import PoseSampler, sample_phenotype


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

SKIN = np.array([[255, 224, 196], [241, 194, 125], [224, 172, 105], [198, 134, 66], [141, 85, 36],
                 [92, 51, 23]]) / 255
HAIR = np.array([[20, 15, 10], [60, 40, 25], [110, 75, 40], [200, 170, 100], [150, 60, 30],
                 [200, 200, 200]]) / 255
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
    back_top = (verts[:, 2] < head[2]) & (verts[:, 1] > head[1])
    hair = is_head & ((verts[:, 1] > eye_y + 0.03) | back_top)
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


@dataclass
class Camera:
    """A scene's pinhole camera: K (3, 3), field of view, height above the floor, tilt, roll, pose."""

    K: np.ndarray
    fov: float
    focal: float
    camera_height: float
    pitch: float
    roll: float
    R_wc: np.ndarray  # world -> camera axes
    center: np.ndarray  # camera centre in the world (y up)
    width: int
    height: int


@dataclass
class People:
    """Sampled bodies before placement: phenotypes, rotations, styles, world vertices and joints."""

    shapes: np.ndarray
    rot_w: torch.Tensor
    styles: list[str]
    verts_w: np.ndarray
    joints_w: np.ndarray


@dataclass
class Placement:
    person: int
    offset: np.ndarray  # world translation of the body
    angle: float  # bearing from the camera (rad)
    distance: float


@dataclass
class RenderedScene:
    """One scene: image (H, W, 3) uint8, mask (H, W) uint8 person index + 1, depth (H, W) float32 metres
    along the optical axis (0 where nothing is measurable: a photo backdrop or the sky), annotation."""

    image: np.ndarray
    mask: np.ndarray
    depth: np.ndarray
    annotation: dict


@dataclass
class Light:
    direction: torch.Tensor  # camera frame
    ambient: float
    diffuse: float


def _sample_light(rng: np.random.Generator, cam: Camera) -> Light:
    e, a = math.radians(rng.uniform(25, 80)), rng.uniform(0, 2 * math.pi)
    light_w = np.array([math.cos(e) * math.sin(a), math.sin(e), math.cos(e) * math.cos(a)])
    return Light(torch.tensor(cam.R_wc @ light_w, dtype=torch.float32), rng.uniform(0.3, 0.55),
                 rng.uniform(0.45, 0.8))


def _composite(rng: np.random.Generator, background: torch.Tensor, frags, verts_t, faces_t,
               colors: torch.Tensor | None, light: Light) -> np.ndarray:
    """Shaded people over the background with soft edges, then gamma and sensor noise: (H, W, 3) uint8."""
    if colors is not None:
        rgb, mask = shade(frags, verts_t, faces_t, colors, light.direction, ambient=light.ambient,
                          diffuse=light.diffuse)
        blur = F.avg_pool2d(mask.float()[None, None], 3, stride=1, padding=1)[0, 0]
        alpha = torch.maximum(blur * mask, blur * 0.5)  # soft edges inside, half-spill outside
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
    return (image.clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy()




class SceneGenerator:
    """Makes scenes with one Anny body model; ``render(seed, index)`` -> RenderedScene."""

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
            "phenotypes": list(self.body.phenotype_names),
            "image_size": [self.config.width, self.config.height],
            "seed": seed, "count": count,
        }

    @torch.no_grad()
    def render(self, seed: int, index: int) -> RenderedScene:
        """Scene ``index`` of ``seed``: camera, people, occlusion culling, background, image, annotation."""
        rng = np.random.default_rng([seed, index])
        cam = self._sample_camera(rng)
        people = self._sample_people(rng)
        placed = self._place_people(rng, cam, people)
        chosen = [p.person for p in placed]
        offsets = np.stack([p.offset for p in placed]) if placed else np.zeros((0, 3))
        verts_c = np.einsum("ij,pvj->pvi", cam.R_wc, people.verts_w[chosen] + offsets[:, None] - cam.center)
        joints_c = np.einsum("ij,pkj->pki", cam.R_wc, people.joints_w[chosen] + offsets[:, None] - cam.center)
        colors = [person_colors(rng, self.regions, float(people.shapes[i, 1])) for i in chosen]
        light = _sample_light(rng, cam)
        keep, frags, owner, verts_t, faces_t, vis_frac = self._cull_hidden(verts_c, cam)
        background, bg_depth = self._background(rng, cam, [(offsets[k, 0], offsets[k, 2]) for k in keep])
        col = torch.cat([colors[k] for k in keep]) if keep else None
        image = _composite(rng, background, frags, verts_t, faces_t, col, light)
        depth = torch.where(owner >= 0, frags.depth, bg_depth).float().numpy()
        ann = self._annotate(seed, index, cam, people, [chosen[k] for k in keep], joints_c[keep],
                             verts_c[keep], frags, owner, vis_frac)
        return RenderedScene(image, (owner + 1).to(torch.uint8).numpy(), depth, ann)

    def _sample_camera(self, rng: np.random.Generator) -> Camera:
        cfg = self.config
        fov = rng.uniform(*cfg.fov_deg)
        focal = max(cfg.width, cfg.height) / (2 * math.tan(math.radians(fov) / 2))
        K = np.array([[focal, 0, cfg.width / 2], [0, focal, cfg.height / 2], [0, 0, 1]])
        cam_h = rng.uniform(0.5, 2.6)
        pitch = float(np.clip(rng.normal(4 + 8 * (cam_h - 1.2), 6), -8, 35))
        roll = float(rng.normal(0, 2.5))
        return Camera(K, fov, focal, cam_h, pitch, roll, look_rotation(pitch, roll),
                      np.array([0.0, cam_h, 0.0]), cfg.width, cfg.height)

    def _sample_people(self, rng: np.random.Generator) -> People:
        """Phenotypes, poses and headings of 1..max_people bodies, posed in the world at the origin."""
        cfg = self.config
        count = int(rng.integers(cfg.min_people, cfg.max_people + 1))
        shapes = np.stack([sample_phenotype(rng) for _ in range(count)])
        rots, styles = zip(*(self.poses.sample(rng) for _ in range(count)), strict=True)
        rot_w = torch.stack(rots)
        for i in range(count):
            yaw = math.pi + rng.normal(0, 0.9) if rng.random() < 0.65 else rng.uniform(0, 2 * math.pi)
            lean = roma.rotvec_to_rotmat(torch.tensor([rng.normal(0, 0.05), 0.0, rng.normal(0, 0.05)]))
            rot_w[i, 0] = torch.tensor(_rot_y(yaw), dtype=torch.float32) @ lean.float()
        body_w = self.body(rot_w, torch.tensor(shapes))
        return People(shapes, rot_w, list(styles), body_w.vertices.double().numpy(),
                      body_w.joints.double().numpy())

    def _place_people(self, rng: np.random.Generator, cam: Camera, people: People) -> list[Placement]:
        """Stand each person on the floor in view (some behind others, for occlusion); some may not fit."""
        cfg = self.config
        head = self.body.spec.head_index
        hfov = 2 * math.atan(cam.width / (2 * cam.focal))
        placed: list[Placement] = []
        for i in range(len(people.shapes)):
            feet = people.verts_w[i, :, 1].min()
            tall = people.verts_w[i, :, 1].max() - feet
            d_min = max(1.2, cam.focal * tall / (1.1 * cam.height))
            d_max = max(d_min * 1.01, min(16.0, cam.focal * tall / (cfg.min_height_frac * cam.height)))
            for _ in range(30):
                if placed and rng.random() < 0.35:  # behind someone: occlusion
                    other = placed[rng.integers(len(placed))]
                    angle, dist = other.angle + rng.normal(0, 0.06), other.distance + rng.uniform(0.7, 3.0)
                else:
                    angle = rng.uniform(-0.48, 0.48) * hfov
                    dist = d_min * (d_max / d_min) ** rng.uniform(0, 1)
                offset = np.array([dist * math.sin(angle), -feet, dist * math.cos(angle)])
                if any(np.hypot(*(offset - p.offset)[[0, 2]]) < 0.6 for p in placed):
                    continue
                head_c = cam.R_wc @ (people.joints_w[i, head] + offset - cam.center)
                if head_c[2] < 0.5:
                    continue
                u, v = (cam.K @ head_c)[:2] / head_c[2]
                if 0 <= u < cam.width and 0 <= v < cam.height:
                    placed.append(Placement(i, offset, angle, dist))
                    break
        return placed

    def _cull_hidden(self, verts_c: np.ndarray, cam: Camera):
        """Drop people (almost) hidden by others and render again until all left are visible enough."""
        Kt = torch.tensor(cam.K, dtype=torch.float32)
        keep = list(range(len(verts_c)))
        while True:
            frags, owner, verts_t, faces_t = self._raster(verts_c[keep], Kt, cam.width, cam.height)
            vis_frac = self._visible_fraction(verts_t, owner, frags.depth, Kt, len(keep), cam.width,
                                              cam.height)
            low = [k for k, f in zip(keep, vis_frac, strict=True) if f < self.config.min_visible]
            if not low:
                return keep, frags, owner, verts_t, faces_t, vis_frac
            keep = [k for k in keep if k not in low]

    def _background(self, rng: np.random.Generator, cam: Camera, ground: list[tuple[float, float]]):
        """A room (floor and wall, with depth) or a photo (no depth: 0): (H, W, 3) rgb and (H, W) depth."""
        brightness = rng.uniform(0.6, 1.1)
        if rng.random() < 0.5:
            rgb, depth = backgrounds.room_background(rng, cam.width, cam.height, cam.K, cam.R_wc, cam.center,
                                                     ground)
        else:
            rgb = backgrounds.photo_background(rng, cam.width, cam.height)
            depth = torch.zeros(cam.height, cam.width)
        return rgb * brightness, depth

    def _annotate(self, seed: int, index: int, cam: Camera, people: People, sel: list[int],
                  joints_c: np.ndarray, verts_c: np.ndarray, frags, owner, vis_frac) -> dict:
        spec = self.body.spec
        Kt = torch.tensor(cam.K, dtype=torch.float32)
        rotmats = people.rot_w[sel].clone()
        rotmats[:, 0] = torch.tensor(cam.R_wc, dtype=torch.float32) @ rotmats[:, 0]
        j3 = torch.tensor(joints_c, dtype=torch.float32)
        j2 = project(j3, Kt)
        jvis = self._joint_visibility(j3, j2, owner, frags.depth, cam.width, cam.height)
        v3 = torch.tensor(verts_c, dtype=torch.float32)
        v2 = project(v3, Kt)
        ann = {
            "K": cam.K.astype(np.float32), "width": np.int64(cam.width), "height": np.int64(cam.height),
            "fov_deg": np.float32(cam.fov), "camera_height": np.float32(cam.camera_height),
            "camera_pitch_deg": np.float32(cam.pitch), "camera_roll_deg": np.float32(cam.roll),
            "R_world_to_camera": cam.R_wc.astype(np.float32), "camera_center": cam.center.astype(np.float32),
            "body_model": spec.name, "rotmats": rotmats.numpy(),
            "pose": roma.rotmat_to_rotvec(rotmats).numpy(),
            "shape": people.shapes[sel].astype(np.float32), "expression": np.zeros((len(sel), 0), np.float32),
            "transl_pelvis": j3[:, spec.pelvis_index].numpy(), "transl": j3[:, spec.head_index].numpy(),
            "center_2d": j2[:, spec.head_index].numpy(), "joints": j3.numpy(), "joints_2d": j2.numpy(),
            "joints_visible": jvis.numpy(),
            "bbox": torch.cat([v2.amin(1), v2.amax(1)], 1).numpy() if sel else np.zeros((0, 4), np.float32),
            "visible_fraction": np.asarray(vis_frac, dtype=np.float32).reshape(len(sel)),
            "style": np.array([people.styles[i] for i in sel], dtype=str).reshape(len(sel)),
            "seed": np.int64(seed), "index": np.int64(index),
        }
        if self.config.with_vertices:
            ann["vertices"] = v3.numpy().astype(np.float16)
        return ann

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
        inside, hidden = self._hidden(j3.reshape(-1, 3), j2.reshape(-1, 2), person, owner, depth, width,
                                      height)
        return (inside & ~hidden).view(j3.shape[:2])


_worker: SceneGenerator | None = None


def _init_worker(config: SynthConfig) -> None:
    global _worker
    torch.set_num_threads(1)
    _worker = SceneGenerator(config)


def _render_one(job: tuple[str, int, int]) -> tuple[float, int]:
    out, seed, index = job
    t0 = time.perf_counter()
    scene = _worker.render(seed, index)
    write_scene(Path(out), index, scene.image, scene.mask, scene.annotation, depth=scene.depth)
    return time.perf_counter() - t0, len(scene.annotation["shape"])


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
