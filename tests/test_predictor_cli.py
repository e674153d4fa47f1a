"""``lighthmr predict``: JSON, meshes and overlays per image; one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from lighthmr_ros.cli import main


@pytest.fixture
def images(tmp_path):
    from skimage import data

    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(data.astronaut()[::2, ::3]).save(folder / "astronaut.png")  # 256 x 171, non-square
    Image.fromarray(data.camera()[::4, ::4]).save(folder / "camera.jpg")  # grayscale
    return folder


@pytest.mark.slow
def test_predict_writes_files(images, tmp_path, model_smplx_dir):
    out = tmp_path / "out"
    code = main(
        [
            "predict",
            str(images / "astronaut.png"),
            str(images),
            "--out",
            str(out),
            "--config",
            "lighthmr_tinyvit5m",
            "--body-model",
            "smplx",
            "--smplx-model-dir",
            str(model_smplx_dir),
            "--image-size",
            "256",
            "--threshold",
            "0.0",
            "--max-humans",
            "2",
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    doc = json.loads((out / "astronaut.json").read_text())
    assert doc["width"] == 171 and doc["height"] == 256 and doc["body_model"] == "smplx" and len(doc["humans"]) == 2
    person = doc["humans"][0]
    assert {"score", "center_2d", "translation", "pose", "shape", "joints", "joints_2d", "mesh"} <= set(person)
    assert "vertices" not in person and len(person["joints"]) == len(doc["joint_names"])
    obj = (out / person["mesh"]).read_text().splitlines()
    verts = [ln for ln in obj if ln.startswith("v ")]
    faces = [ln for ln in obj if ln.startswith("f ")]
    assert len(verts) > 100 and len(faces) > 100
    assert max(int(i) for ln in faces for i in ln.split()[1:]) == len(verts)  # 1-based, all used
    overlay = np.asarray(Image.open(out / "astronaut_overlay.png"))
    assert overlay.shape == (256, 171, 3)
    assert (out / "camera.json").exists() and (out / "camera_overlay.png").exists()


def test_predict_errors(tmp_path, capsys):
    code = main(["predict", str(tmp_path / "missing.jpg"), "--out", str(tmp_path / "o")])
    # the error is one line; the bundled demo model adds its own one-line note before it (issue 20)
    err = "\n".join(x for x in capsys.readouterr().err.strip().splitlines() if ": note: " not in x)
    assert code == 2 and "does not exist" in err and len(err.splitlines()) == 1
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    code = main(["predict", str(bad), "--out", str(tmp_path / "o"), "--intrinsics", "1,2,3"])
    assert code == 2 and "--intrinsics" in capsys.readouterr().err
