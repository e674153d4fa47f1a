"""Small data sets written in the REAL release formats of BEDLAM, 3DPW and AGORA.

Used by the tests and by ``lighthmr rehearse`` (a shipped config run as shipped on generated data).
People are stick figures: a fixed 55-joint SMPL-X-ordered skeleton, turned and placed in the camera
frame, drawn as bright blobs at the projected joints on a black background. The annotation files carry
exactly what the real releases carry (see the format notes in bedlam.py, threedpw.py and agora.py).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import cv2
import numpy as np

from lighthmr_ros.training.agora import agora_K, local_to_camera_rotation
from lighthmr_ros.training.targets import SMPLX_JOINT_NAMES, project_points

BACKGROUND = 0
BLOB_RADIUS = 16  # pixels at 1280-wide images: still a few pixels at 224


def skeleton_template() -> np.ndarray:
    """(55,3) joints in the body frame (metres, y up, facing +z, pelvis at the origin, left = +x)."""
    body = {
        "pelvis": (0, 0, 0),
        "left_hip": (0.08, -0.08, 0),
        "right_hip": (-0.08, -0.08, 0),
        "spine1": (0, 0.1, 0),
        "left_knee": (0.09, -0.48, 0.02),
        "right_knee": (-0.09, -0.48, 0.02),
        "spine2": (0, 0.22, 0),
        "left_ankle": (0.09, -0.88, 0),
        "right_ankle": (-0.09, -0.88, 0),
        "spine3": (0, 0.28, 0),
        "left_foot": (0.1, -0.93, 0.12),
        "right_foot": (-0.1, -0.93, 0.12),
        "neck": (0, 0.5, 0),
        "left_collar": (0.07, 0.42, 0),
        "right_collar": (-0.07, 0.42, 0),
        "head": (0, 0.64, 0.03),
        "left_shoulder": (0.18, 0.45, 0),
        "right_shoulder": (-0.18, 0.45, 0),
        "left_elbow": (0.21, 0.18, 0),
        "right_elbow": (-0.21, 0.18, 0),
        "left_wrist": (0.23, -0.06, 0.02),
        "right_wrist": (-0.23, -0.06, 0.02),
        "jaw": (0, 0.58, 0.08),
        "left_eye_smplhf": (0.03, 0.67, 0.09),
        "right_eye_smplhf": (-0.03, 0.67, 0.09),
    }
    out = np.zeros((55, 3))
    for i, name in enumerate(SMPLX_JOINT_NAMES):
        if name in body:
            out[i] = body[name]
        else:  # fingers: spread beyond the wrist of their side
            side = 1.0 if name.startswith("left") else -1.0
            k = (i - 25) % 15
            out[i] = (side * (0.23 + 0.012 * (k // 3)), -0.10 - 0.02 * (k % 3), 0.02)
    return out


def make_person(rng: np.random.Generator, K: np.ndarray, width: int, height: int, slot: int, n: int) -> dict:
    """One standing person spread across the image, returned in the camera frame."""
    depth = K[1, 1] * 1.7 / (0.7 * height) * rng.uniform(1.0, 1.3)  # whole body inside the frame
    u = width * (slot + 0.5) / n + rng.uniform(-0.03, 0.03) * width
    v = height * rng.uniform(0.45, 0.55)
    pelvis = np.linalg.inv(K) @ np.array([u, v, 1.0]) * depth
    yaw = rng.uniform(-60, 60)
    R_go = (
        cv2.Rodrigues(np.array([np.pi, 0.0, 0.0]))[0]
        @ cv2.Rodrigues(np.array([0.0, np.radians(yaw), 0.0]))[0]
    )
    joints = skeleton_template() @ R_go.T + pelvis
    rotvec = rng.normal(0.0, 0.1, size=(55, 3))
    rotvec[0] = cv2.Rodrigues(R_go)[0][:, 0]
    return {
        "joints": joints,
        "pelvis": pelvis,
        "R_go": R_go,
        "rotvec": rotvec,
        "betas": rng.normal(0, 0.5, 11),
        "colour": tuple(int(c) for c in rng.integers(128, 256, size=3)),
    }


def draw_people(width: int, height: int, people: list[dict], K: np.ndarray) -> np.ndarray:
    image = np.full((height, width, 3), BACKGROUND, np.uint8)
    radius = max(3, int(round(BLOB_RADIUS * max(width, height) / 1280)))
    for p in people:
        for x, y in project_points(p["joints"][:22], K):
            cv2.circle(image, (int(round(x)), int(round(y))), radius, p["colour"], -1)
    return image


def _write_rgb(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))


# ----------------------------------------------------------------------------------------- BEDLAM
def write_bedlam(root: Path, seed: int = 0, split: str = "training") -> dict:
    """Two scenes (one 'closeup', stored rotated) in the Multi-HMR BEDLAM layout; returns the truth."""
    rng = np.random.default_rng(seed)
    truth = {}
    scenes = {
        "20221010_3_1000_batch01hand_6fps": (1280, 720, 2, 3),
        "20221011_1_250_batch01hand_closeup_suburb_a_6fps": (720, 1280, 1, 2),
    }
    for scene, (w, h, n_frames, n_people) in scenes.items():
        rows = {
            k: []
            for k in (
                "imgname",
                "center",
                "scale",
                "pose_cam",
                "pose_world",
                "shape",
                "trans_cam",
                "trans_world",
                "cam_ext",
                "cam_int",
                "gtkps",
                "gender",
                "sub",
            )
        }
        for f in range(n_frames):
            fl = rng.uniform(30, 60)
            closeup = "closeup" in scene
            sensor = (20.25, 36.0) if closeup else (36.0, 20.25)
            K = np.array([[fl / sensor[0] * w, 0, w / 2], [0, fl / sensor[1] * h, h / 2], [0, 0, 1.0]])
            people = [make_person(rng, K, w, h, s, n_people) for s in range(n_people)]
            imgname = f"seq_{f:06d}/seq_{f:06d}_{f * 5:04d}.png"
            image = draw_people(w, h, people, K)
            stored = cv2.rotate(image, cv2.ROTATE_90_COUNTERCLOCKWISE) if closeup else image
            _write_rgb(root / split / scene / "png" / imgname, stored)
            truth[f"{scene}/{imgname}"] = {"people": people, "K": K, "image": image}
            for p in people:
                pitch = cv2.Rodrigues(np.array([np.radians(rng.uniform(-10, 10)), 0, 0]))[0]
                ext = np.eye(4)
                ext[:3, :3] = pitch
                ext[:3, 3] = p["pelvis"] + rng.normal(0, 0.3, 3)
                kps = np.ones((127, 3))
                kps[:55, :2] = project_points(p["joints"], K)
                kps[55:, :2] = kps[15, :2] + rng.normal(0, 5, (72, 2))
                rows["imgname"].append(imgname)
                rows["center"].append(kps[:22, :2].mean(0))
                rows["scale"].append(1.0)
                rows["pose_cam"].append(p["rotvec"].reshape(165))
                rows["pose_world"].append(p["rotvec"].reshape(165))
                rows["shape"].append(p["betas"])
                rows["trans_cam"].append(p["pelvis"] - ext[:3, 3])
                rows["trans_world"].append(p["pelvis"])
                rows["cam_ext"].append(ext)
                rows["cam_int"].append(K)
                rows["gtkps"].append(kps)
                rows["gender"].append("neutral")
                rows["sub"].append("rp_fixture_posed_001")
        out = root / f"all_npz_12_{split}" / f"{scene}.npz"
        out.parent.mkdir(parents=True, exist_ok=True)
        np.savez(out, **{k: np.array(v) for k, v in rows.items()})
    return truth


# ----------------------------------------------------------------------------------------- 3DPW
def write_threedpw(root: Path, seed: int = 0, split: str = "test", name: str = "downtown_fixture_00") -> dict:
    """One 2-actor sequence, 3 frames (actor 1 invalid in the last frame), portrait 540x960."""
    rng = np.random.default_rng(seed)
    w, h, n = 540, 960, 3
    K = np.array([[900.0, 0, 270.0], [0, 900.0, 480.0], [0, 0, 1.0]])
    seq = {
        "sequence": name,
        "genders": ["m", "f"],
        "cam_intrinsics": K,
        "betas": [],
        "poses": [],
        "trans": [],
        "jointPositions": [],
        "campose_valid": [],
        "poses2d": [],
        "img_frame_ids": np.arange(n) * 2,
        "cam_poses": np.zeros((n, 4, 4)),
    }
    frames = [[None, None] for _ in range(n)]
    for k in range(n):
        cam = np.eye(4)
        cam[:3, :3] = cv2.Rodrigues(rng.normal(0, 0.05, 3))[0]
        cam[:3, 3] = rng.normal(0, 0.2, 3)
        seq["cam_poses"][k] = cam
        for a in range(2):
            p = make_person(rng, K, w, h, a, 2)
            frames[k][a] = p
    for a in range(2):
        poses, trans, jpos, p2d = [], [], [], []
        for k in range(n):
            cam = seq["cam_poses"][k]
            R, t = cam[:3, :3], cam[:3, 3]
            p = frames[k][a]
            joints_world = (p["joints"] - t) @ R  # R^T (X_cam - t)
            smpl_joints = np.concatenate([joints_world[:22], joints_world[[20, 21]] * 1.0], 0)  # 22/23: hands
            go_world = R.T @ p["R_go"]
            pose = np.zeros((24, 3))
            pose[:22] = p["rotvec"][:22]
            pose[0] = cv2.Rodrigues(go_world)[0][:, 0]
            poses.append(pose.reshape(72))
            trans.append(R.T @ (p["pelvis"] - t))
            jpos.append(smpl_joints.reshape(72))
            kp = np.ones((3, 18))
            p2d.append(kp)
        seq["poses"].append(np.array(poses))
        seq["trans"].append(np.array(trans))
        seq["jointPositions"].append(np.array(jpos))
        seq["betas"].append(rng.normal(0, 1, 10))
        seq["poses2d"].append(np.array(p2d))
        seq["campose_valid"].append(np.array([1, 1, 0 if a == 1 else 1]))
    for k in range(n):
        people = [frames[k][0]] + ([frames[k][1]] if seq["campose_valid"][1][k] else [])
        image = draw_people(w, h, [frames[k][0], frames[k][1]], K)
        _write_rgb(root / "imageFiles" / name / f"image_{k:05d}.jpg", image)
        frames[k] = {"people": people, "K": K, "image": image}
    path = root / "sequenceFiles" / split / f"{name}.pkl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(seq, f, protocol=2)
    return {f"{name}/image_{k:05d}.jpg": frames[k] for k in range(n)}


# ----------------------------------------------------------------------------------------- AGORA
def write_agora(root: Path, seed: int = 0, split: str = "validation", n_verts: int = 64) -> dict:
    """Two 1280x720 images ('hdri' and 'cam02' cameras), a dataframe pickle and SMPL-X fit pickles."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    w, h = 1280, 720
    names = [
        f"ag_{split}set_renderpeople_bfh_hdri_50mm_5_10_00000.png",
        f"ag_{split}set_renderpeople_bfh_archviz_5_10_cam02_00001.png",
    ]
    rows, truth = [], {}
    for i, img in enumerate(names):
        focal, cam_yaw, pitch = (50.0, 0.0, 0.0) if "hdri" in img else (18.0, -45.0, 30.0)
        K = agora_K(focal, w, h)
        K4 = agora_K(focal, 3840, 2160)
        n = 3
        people = [make_person(rng, K, w, h, s, n) for s in range(n)]
        row = {
            k: []
            for k in (
                "X",
                "Y",
                "Z",
                "Yaw",
                "gender",
                "kid",
                "occlusion",
                "isValid",
                "gt_path_smplx",
                "gt_path_smpl",
                "gt_joints_2d",
                "gt_joints_3d",
                "gt_verts",
            )
        }
        for j, p in enumerate(people):
            yaw = float(rng.uniform(0, 360))
            R_local = local_to_camera_rotation(yaw, cam_yaw, pitch).T @ p["R_go"]
            fit = {
                "global_orient": cv2.Rodrigues(R_local)[0].reshape(1, 3),
                "body_pose": p["rotvec"][1:22].reshape(1, 63),
                "jaw_pose": p["rotvec"][22].reshape(1, 3),
                "leye_pose": p["rotvec"][23].reshape(1, 3),
                "reye_pose": p["rotvec"][24].reshape(1, 3),
                "left_hand_pose": p["rotvec"][25:40].reshape(1, 45),
                "right_hand_pose": p["rotvec"][40:55].reshape(1, 45),
                "betas": p["betas"][:10].reshape(1, 10),
                "expression": np.zeros((1, 10)),
                "transl": np.zeros((1, 3)),
            }
            rel = f"smplx_gt/{split}set_renderpeople_bfh/fixture_{i}_{j}.obj"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            with open(root / rel.replace(".obj", ".pkl"), "wb") as f:
                pickle.dump(fit, f, protocol=2)
            joints127 = np.concatenate([p["joints"], p["joints"][15] + rng.normal(0, 0.05, (72, 3))])
            row["X"].append(rng.uniform(-500, 500))
            row["Y"].append(rng.uniform(-500, 500))
            row["Z"].append(0.0)
            row["Yaw"].append(yaw)
            row["gender"].append("female" if j % 2 else "male")
            row["kid"].append(False)
            row["occlusion"].append(95.0 if j == 2 else 10.0)
            row["isValid"].append(j != 2)
            row["gt_path_smplx"].append(rel)
            row["gt_path_smpl"].append(rel.replace("smplx_gt", "smpl_gt"))
            row["gt_joints_2d"].append(project_points(joints127, K4))
            row["gt_joints_3d"].append(joints127)
            row["gt_verts"].append(p["joints"][15] + rng.normal(0, 0.2, (n_verts, 3)))
        row.update(imgPath=img, camX=0.0, camY=0.0, camZ=170.0, camYaw=cam_yaw)
        rows.append(row)
        image = draw_people(w, h, people, K)
        _write_rgb(root / split / img.replace(".png", "_1280x720.png"), image)
        truth[img] = {"people": people, "K": K, "image": image, "cam": (focal, cam_yaw, pitch)}
    df = pd.DataFrame(rows)
    out = root / "SMPLX" / f"{split}_0_withjv.pkl"
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_pickle(out)
    return truth
