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
