"""Synthetic Anny scenes: rasteriser, pose sampler, scene files and their reader, the command."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import roma
import torch

from lighthmr_ros.errors import DatasetError
from lighthmr_ros.raster import project, rasterize, vertex_normals
from lighthmr_ros.synth import SceneGenerator, SynthConfig, list_scenes, load_scene, read_depth, read_meta
from lighthmr_ros.synth.format import depth_to_millimetres, write_meta, write_scene
from lighthmr_ros.synth.poses import LIMITS, PoseSampler, sample_phenotype

# ---------------------------------------------------------------- rasteriser


def test_rasterize_coverage_depth_order_and_barycentrics():
    # a big far square (two triangles) and a small near triangle in front of it
    verts = torch.tensor([
        [10.0, 10.0, 5.0], [90.0, 10.0, 5.0], [90.0, 70.0, 5.0], [10.0, 70.0, 5.0],
        [30.0, 20.0, 2.0], [60.0, 20.0, 2.0], [30.0, 50.0, 2.0],
    ])
    faces = torch.tensor([[0, 2, 1], [0, 3, 2], [4, 6, 5]])  # wound like outward faces seen from the front
    frags = rasterize(verts, faces, 80, 100)
    covered = frags.face >= 0
    assert covered.sum().item() == 80 * 60  # the square covers exactly its 80 x 60 pixel centres
    near = frags.face == 2
    assert abs(near.sum().item() - 0.5 * 30 * 30) < 30  # the near triangle wins where they overlap
    assert torch.allclose(frags.depth[near], torch.tensor(2.0))
    assert torch.allclose(frags.depth[covered & ~near], torch.tensor(5.0))
    torch.testing.assert_close(frags.bary[covered].sum(1), torch.ones(int(covered.sum())))
    # barycentrics reproduce the pixel centre for the screen-aligned (constant depth) triangle
    ys, xs = torch.nonzero(near, as_tuple=True)
    tri = verts[faces[2]][:, :2]
    centre = (frags.bary[ys, xs][:, :, None] * tri[None]).sum(1)
    torch.testing.assert_close(centre, torch.stack([xs + 0.5, ys + 0.5], 1).float(), atol=1e-4, rtol=0)
    assert not covered[:10].any() and (frags.face[~covered] == -1).all()


def test_rasterize_culls_back_faces_and_clips_behind_camera():
    verts = torch.tensor([[10.0, 10.0, 3.0], [50.0, 10.0, 3.0], [10.0, 50.0, 3.0]])
    front, back = torch.tensor([[0, 2, 1]]), torch.tensor([[0, 1, 2]])
    assert (rasterize(verts, front, 64, 64).face >= 0).any()
    assert not (rasterize(verts, back, 64, 64).face >= 0).any()
    assert (rasterize(verts, back, 64, 64, cull_back=False).face >= 0).any()
    behind = verts.clone()
    behind[:, 2] = -1.0
    assert not (rasterize(behind, front, 64, 64).face >= 0).any()


def test_project_and_normals():
    K = torch.tensor([[100.0, 0, 32], [0, 100.0, 24], [0, 0, 1]])
    uv = project(torch.tensor([[0.0, 0.0, 2.0], [0.2, -0.1, 2.0]]), K)
    torch.testing.assert_close(uv, torch.tensor([[32.0, 24.0], [42.0, 19.0]]))
    verts = torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [0.0, 1, 0]])
    n = vertex_normals(verts, torch.tensor([[0, 1, 2]]))
    torch.testing.assert_close(n, torch.tensor([[0.0, 0, 1]]).expand(3, 3))


# ---------------------------------------------------------------- poses and phenotypes


def test_pose_sampler_respects_limits(anny_body):
    sampler = PoseSampler(anny_body)
    rng = np.random.default_rng(0)
    names = list(anny_body.spec.pose_joint_names)
    poses = [sampler.sample(rng)[0] for _ in range(40)]
    rots = torch.stack(poses)
    assert rots.shape == (40, 36, 3, 3)
    torch.testing.assert_close(rots @ rots.transpose(-1, -2), torch.eye(3).expand_as(rots), atol=1e-5, rtol=0)
    torch.testing.assert_close(rots[:, 0], torch.eye(3).expand(40, 3, 3))
    angles = roma.rotmat_to_rotvec(rots).norm(dim=-1)  # (40, 36)
    for j, bone in enumerate(names[1:], start=1):
        key = bone[:-2] + ".L" if bone.endswith(".R") else bone
        bound = sum(max(abs(lo), abs(hi)) for _, lo, hi in LIMITS[key])
        assert angles[:, j].max() <= math.radians(bound) + 1e-4, bone
    assert angles[:, 1:].std(0).mean() > 0.05  # the poses differ
    knee = names.index("lowerleg01.L")
    assert (roma.rotmat_to_rotvec(rots[:, knee])[:, 0] >= -1e-5).all()  # knees never bend forwards
    # the right side mirrors the left: for a symmetric draw the body is symmetric
    styles = {sampler.sample(np.random.default_rng(s))[1] for s in range(30)}
    assert {"stand", "walk", "free"} <= styles


def test_phenotypes_cover_children_to_elders():
    rng = np.random.default_rng(0)
    ph = np.stack([sample_phenotype(rng) for _ in range(400)])
    assert ph.shape == (400, 6) and ph.min() >= 0 and ph.max() <= 1
    ages = ph[:, 1]
    assert (ages < 0.5).mean() > 0.08 and (ages > 0.9).mean() > 0.05


# ---------------------------------------------------------------- scenes


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory, anny_body):
    out = tmp_path_factory.mktemp("synth")
    gen = SceneGenerator(SynthConfig(width=192, height=160, min_people=2, max_people=4), body=anny_body)
    write_meta(out, gen.meta(seed=7, count=3))
    for index in range(3):
        scene = gen.render(7, index)
        write_scene(out, index, scene.image, scene.mask, scene.annotation, depth=scene.depth)
    return out, gen


@pytest.mark.slow
def test_scene_files_and_annotations(scene_dir, anny_body):
    out, _ = scene_dir
    meta = read_meta(out)
    assert meta["body_model"] == "anny" and meta["image_size"] == [192, 160] and meta["count"] == 3
    assert meta["joint_names"] == list(anny_body.spec.joint_names)
    paths = list_scenes(out)
    assert [p.name for p in paths] == ["000000.npz", "000001.npz", "000002.npz"]
    spec = anny_body.spec
    for path in paths:
        s = load_scene(path, with_image=True)
        P = len(s["shape"])
        assert 1 <= P <= 4 and s["image_rgb"].shape == (160, 192, 3)
        assert s["rotmats"].shape == (P, 36, 3, 3) and s["pose"].shape == (P, 36, 3)
        assert s["shape"].shape == (P, 6) and s["expression"].shape == (P, 0)
        assert s["joints"].shape == (P, 104, 3) and s["joints_2d"].shape == (P, 104, 2)
        assert s["joints_visible"].dtype == bool and len(s["style"]) == P
        assert (s["visible_fraction"] >= 0.2).all()
        # the body model at the stored parameters, moved to the pelvis translation, gives the stored joints
        body = anny_body(torch.tensor(s["rotmats"]), torch.tensor(s["shape"]))
        pelvis = body.joints[:, spec.pelvis_index : spec.pelvis_index + 1]
        joints = body.joints - pelvis + torch.tensor(s["transl_pelvis"])[:, None]
        torch.testing.assert_close(joints, torch.tensor(s["joints"]), atol=1e-4, rtol=0)
        torch.testing.assert_close(torch.tensor(s["transl"]), torch.tensor(s["joints"][:, spec.head_index]))
        # 2D joints are projections with K; the detection centres lie in the image
        torch.testing.assert_close(project(torch.tensor(s["joints"]), torch.tensor(s["K"])),
                                   torch.tensor(s["joints_2d"]), atol=1e-3, rtol=0)
        c = s["center_2d"]
        assert ((c >= 0) & (c < [192, 160])).all()
        # the camera looks at people in front of it, upright in the image (head above pelvis: smaller v)
        assert (s["transl_pelvis"][:, 2] > 0.5).all()
        # the person-index map shows exactly the annotated people; visible joints mostly lie on a person,
        # joints inside the image but not visible lie on another person
        from PIL import Image

        mask = np.asarray(Image.open(s["mask_path"]))
        assert set(np.unique(mask)) - {0} == set(range(1, P + 1))
        uv = np.floor(s["joints_2d"][s["joints_visible"]]).astype(int)
        assert (mask[uv[:, 1], uv[:, 0]] > 0).mean() > 0.9
        inside = ((s["joints_2d"] >= 0) & (s["joints_2d"] < [192, 160])).all(-1) & (s["joints"][..., 2] > 0)
        for p, k in zip(*np.nonzero(inside & ~s["joints_visible"]), strict=True):
            x, y = np.floor(s["joints_2d"][p, k]).astype(int)
            assert mask[y, x] not in (0, p + 1)


@pytest.mark.slow
def test_scenes_are_deterministic(scene_dir):
    out, gen = scene_dir
    scene = gen.render(7, 1)
    mask, ann = scene.mask, scene.annotation
    stored = load_scene(out / "000001.npz", with_image=True)
    np.testing.assert_array_equal(ann["rotmats"], stored["rotmats"])
    np.testing.assert_array_equal(ann["joints_2d"], stored["joints_2d"])
    from PIL import Image

    np.testing.assert_array_equal(mask, np.asarray(Image.open(stored["mask_path"])))
    other = gen.render(8, 1).annotation
    assert other["rotmats"].shape != ann["rotmats"].shape or not np.allclose(other["rotmats"], ann["rotmats"])


def test_depth_map_is_the_true_depth_of_people_and_room(anny_body):
    """Back-projected depth pixels lie on the people's meshes, on the floor or on the back wall."""
    gen = SceneGenerator(SynthConfig(width=160, height=128, min_people=2, max_people=3, with_vertices=True),
                         body=anny_body)
    rooms = 0
    for seed, index in [(7, 0), (11, 2), (7, 1)]:
        scene = gen.render(seed, index)
        ann, depth = scene.annotation, scene.depth
        assert depth.shape == (128, 160) and depth.dtype == np.float32 and (depth >= 0).all()
        K = ann["K"].astype(np.float64)
        v, u = np.nonzero(depth > 0)
        rays = np.stack([u + 0.5, v + 0.5, np.ones_like(u, dtype=float)], 1) @ np.linalg.inv(K).T
        points = rays * depth[v, u, None]
        people = scene.mask[v, u] > 0
        verts = ann["vertices"].astype(np.float64)
        for p in range(len(verts)):
            mine = scene.mask[v, u] == p + 1
            near = np.min(np.linalg.norm(points[mine][::7, None] - verts[p][None, ::3], axis=-1), axis=1)
            assert np.median(near) < 0.03, (seed, index, p)
        if (~people).any():
            rooms += 1
            world = points[~people] @ ann["R_world_to_camera"].astype(np.float64) + ann["camera_center"]
            on_floor = np.abs(world[:, 1]) < 0.01
            wall_z = np.median(world[~on_floor, 2]) if (~on_floor).any() else 0.0
            on_wall = np.abs(world[:, 2] - wall_z) < 0.01
            assert (on_floor | on_wall).mean() > 0.99
        else:  # a photo backdrop has no depth
            assert (depth[scene.mask == 0] == 0).all()
    assert rooms >= 1


def test_depth_files_are_16_bit_millimetres(tmp_path):
    depth = np.array([[0.0, 1.2344], [70.0, np.nan]])
    np.testing.assert_array_equal(depth_to_millimetres(depth), [[0, 1234], [0, 0]])
    write_meta(tmp_path, {"body_model": "anny"})
    ann = {"K": np.eye(3, dtype=np.float32), "body_model": "anny", "style": np.zeros(0, str)}
    image, mask = np.zeros((2, 2, 3), np.uint8), np.zeros((2, 2), np.uint8)
    path = write_scene(tmp_path, 4, image, mask, ann, depth=depth)
    scene = load_scene(path)
    assert scene["depth_path"].name == "000004_depth.png"
    stored = read_depth(scene["depth_path"])
    assert stored.dtype == np.uint16
    np.testing.assert_array_equal(stored, [[0, 1234], [0, 0]])
    with pytest.raises(DatasetError, match="does not match the image size"):
        write_scene(tmp_path, 5, np.zeros((2, 2, 3), np.uint8), np.zeros((2, 2), np.uint8), ann,
                    depth=np.zeros((3, 3)))
    with pytest.raises(DatasetError, match="regenerate"):
        read_depth(tmp_path / "none.png")


def test_load_scene_errors(tmp_path):
    with pytest.raises(DatasetError):
        load_scene(tmp_path / "nothing.npz")
    with pytest.raises(DatasetError, match="lighthmr synth"):
        list_scenes(tmp_path)
    (tmp_path / "meta.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(DatasetError, match="not a lighthmr synth folder"):
        read_meta(tmp_path)


def test_synth_command(tmp_path, capsys):
    from lighthmr_ros.cli import main

    out = tmp_path / "scenes"
    assert main(["synth", "--out", str(out), "--n", "2", "--seed", "3", "--size", "96", "80",
                 "--max-people", "2", "--quiet"]) == 0
    assert "wrote 2 scenes" in capsys.readouterr().out
    assert len(list_scenes(out)) == 2 and read_meta(out)["seed"] == 3
    first = load_scene(list_scenes(out)[0])
    assert read_depth(first["depth_path"]).shape == (80, 96)  # every scene comes with its depth map
    assert main(["synth", "--out", str(out), "--n", "0"]) == 2
    assert "--n must be at least 1" in capsys.readouterr().err


@pytest.mark.slow
def test_parallel_workers_write_the_same_scenes(tmp_path):
    from lighthmr_ros.synth import generate_scenes

    config = SynthConfig(width=64, height=64, max_people=2)
    one = generate_scenes(tmp_path / "one", 2, seed=5, config=config, progress=False)
    two = generate_scenes(tmp_path / "two", 2, seed=5, config=config, progress=False, workers=2)
    assert one["scenes"] == two["scenes"] == 2 and one["people"] == two["people"]
    for a, b in zip(list_scenes(tmp_path / "one"), list_scenes(tmp_path / "two"), strict=True):
        sa, sb = load_scene(a, with_image=True), load_scene(b, with_image=True)
        for key in ("rotmats", "shape", "joints_2d", "joints_visible", "image_rgb"):
            np.testing.assert_array_equal(sa[key], sb[key])


def test_scene_without_people_is_valid(tmp_path, anny_body):
    gen = SceneGenerator(SynthConfig(width=48, height=40, max_people=1, min_visible=1.01), body=anny_body)
    rendered = gen.render(0, 0)
    assert rendered.image.shape == (40, 48, 3) and rendered.mask.max() == 0
    write_meta(tmp_path, gen.meta(0, 1))
    scene = load_scene(write_scene(tmp_path, 0, rendered.image, rendered.mask, rendered.annotation))
    assert scene["depth_path"] is None  # written without a depth map (as folders made before depth maps)
    assert scene["rotmats"].shape == (0, 36, 3, 3) and scene["joints_2d"].shape == (0, 104, 2)
    assert scene["style"] == []
