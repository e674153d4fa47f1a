"""The shipped stage configs: they load, and the rules that keep their numbers honest hold."""

from __future__ import annotations

import pytest

from lighthmr_ros.errors import ConfigError
from lighthmr_ros.training import CONFIG_DIR
from lighthmr_ros.training.config import load_config

SHIPPED = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


@pytest.fixture
def data_env(tmp_path, monkeypatch):
    for var in (
        "BEDLAM_ROOT",
        "PW3D_ROOT",
        "AGORA_ROOT",
        "SMPLX_DIR",
        "TEACHER_CKPT",
        "SYNTH_ROOT",
        "LIGHTHMR_FIXTURE_BEDLAM",
        "LIGHTHMR_FIXTURE_SMPLX",
    ):
        monkeypatch.setenv(var, str(tmp_path))
    return tmp_path


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_config_loads_and_never_selects_on_test(name, data_env):
    cfg = load_config(CONFIG_DIR / f"{name}.yaml")
    assert all(s.split != "test" for s in cfg.data.val)


def test_validating_on_a_test_split_is_refused(data_env):
    with pytest.raises(ConfigError, match="leaks"):
        load_config(CONFIG_DIR / "3dpw_finetune.yaml", ["data.val.0.split=test"])


def _write(tmp_path, body: str):
    path = tmp_path / "stage.yaml"
    path.write_text("data:\n  train:\n    - {dataset: synthetic, root: /data}\n" + body)
    return path


def test_set_values_take_the_type_of_their_field(tmp_path):
    cfg = load_config(
        _write(tmp_path, ""),
        [
            "optim.lr=3e-4",  # YAML 1.1 reads this as a string
            "optim.warmup_steps=5",
            "run.max_steps=1e3",  # an integral number is an integer
            "run.resume=no",
            "run.progress=1",
            "run.tensorboard=False",
            "data.augment.scale=[0.5, 2]",
            'run.freeze=["encoder", "heads"]',
            "name=007",  # a string field keeps the text as written
            "run.amp=off",
            "run.stop_after=null",
            "teacher.gt_weight=0.25",
            "teacher.cache_dir=null",
            "data.train.0.options.tol=1e-3",  # untyped: YAML, with 1.2 floats
        ],
    )
    assert cfg.optim.lr == pytest.approx(3e-4) and isinstance(cfg.optim.lr, float)
    assert cfg.optim.warmup_steps == 5 and cfg.run.max_steps == 1000 and isinstance(cfg.run.max_steps, int)
    assert cfg.run.resume is False and cfg.run.progress is True and cfg.run.tensorboard is False
    assert cfg.data.augment.scale == (0.5, 2.0) and cfg.run.freeze == ["encoder", "heads"]
    assert cfg.name == "007" and cfg.run.amp == "off" and cfg.run.stop_after is None
    assert cfg.teacher is not None and cfg.teacher.gt_weight == 0.25 and cfg.teacher.cache_dir is None
    assert cfg.data.train[0].options == {"tol": 1e-3}


@pytest.mark.parametrize(
    "override, message",
    [
        ("run.max_steps=3.5", r"^run\.max_steps must be an integer, got '3\.5'$"),
        ("run.stop_after=2.5", r"^run\.stop_after must be an integer, got '2\.5'$"),
        ("optim.lr=fast", r"^optim\.lr must be a number, got 'fast'$"),
        ("run.resume=maybe", r"^run\.resume must be true or false, got 'maybe'$"),
        ("data.augment.scale=[1, 2, 3]", r"^data\.augment\.scale must be a list of 2 values, got 3$"),
        ("run.freeze=encoder", r"^run\.freeze must be a list such as \[a, b\], got 'encoder'$"),
        ("run.max_stepz=3", r"^unknown key\(s\) \['max_stepz'\] in run; valid keys are \["),
        ("optim.lr=null", r"^optim\.lr must be a number, got 'null'$"),
    ],
)
def test_set_values_of_the_wrong_type_are_refused(tmp_path, override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(_write(tmp_path, ""), [override])


def test_config_file_numbers_take_the_type_of_their_field(tmp_path):
    body = "optim:\n  lr: 3e-4\n  weight_decay: 1E-5\nrun:\n  max_steps: 1e3\n  resume: 0\n  amp: off\n"
    cfg = load_config(_write(tmp_path, body))
    assert cfg.optim.lr == pytest.approx(3e-4) and cfg.optim.weight_decay == pytest.approx(1e-5)
    assert cfg.run.max_steps == 1000 and isinstance(cfg.run.max_steps, int)
    assert cfg.run.resume is False and cfg.run.amp == "off"
    with pytest.raises(ConfigError, match=r"^run\.max_steps must be an integer, got 2\.5$"):
        load_config(_write(tmp_path, "run:\n  max_steps: 2.5\n"))
    with pytest.raises(ConfigError, match=r"^optim\.lr must be a number, got 'fast'$"):
        load_config(_write(tmp_path, "optim:\n  lr: fast\n"))
