"""Training, distillation and evaluation for lighthmr_ros (installed as ``lighthmr_ros.training``).

Modules: targets (the common Sample/PersonTarget records and augmentations), datasets (registry and
batching), bedlam / threedpw / agora / synthetic (readers of each release format), losses,
supervision (GT in the model's terms), distill (teacher), metrics, evaluate, config and train (the
engine of ``lighthmr train`` / ``lighthmr distill``). Stage configs live in configs/ beside this file.
"""

from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


def config_path(name: str) -> Path:
    """Path of a bundled stage config by name (``bedlam_distill``) or the given path."""
    p = Path(name)
    if p.suffix in (".yaml", ".yml") or p.exists():
        return p
    return CONFIG_DIR / f"{name}.yaml"
