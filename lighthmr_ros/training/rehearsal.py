"""Scale rehearsal: a shipped stage config run AS SHIPPED, under torchrun, killed and resumed.

What a researcher will run on a cluster is exercised here on CPU, on data generated in the releases'
real formats (sample_data.py): the same student, the same teacher architecture and width (a random-
weight ViT-L for ``bedlam_distill``), the same losses, features, batch size, workers, freezing and
validation sets. Only these are overridden:
  - sizes: ``model.image_size`` and ``teacher.image_size`` (tiny, so CPU steps take seconds);
  - steps: ``run.max_steps``, ``run.ckpt_every``, ``run.val_every`` (one validation at the last step),
    ``optim.warmup_steps`` and ``run.log_every`` (every step, to see where the kill lands);
  - paths: data roots, the SMPL-X folder, ``run.output_dir``, ``model.init_checkpoint`` (a fresh
    student checkpoint of the shipped architecture) and ``teacher.checkpoint`` (none: random weights
    of ``teacher.name``, since no official checkpoint can be downloaded here);
  - ``data.num_workers`` 0 by default: on a 2-core machine the shipped 8 loader workers per rank are
    forked anew every epoch, and an epoch of the tiny data is one step (``--workers`` keeps them);
    ``run.threads`` 1 per rank (synthetic_anny ships 2 for one process on 2 cores: two ranks with two
    spinning OpenMP threads each on 2 cores made its steps 10x slower).
The run is launched with ``torch.distributed.run`` (gloo on CPU), SIGKILLed (the whole process group)
once a step past a checkpoint is logged, then launched again: it must resume from its last
checkpoint, lose at most one checkpoint interval, finish, validate and write ``model.pt``.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from lighthmr_ros.errors import ConfigError, LightHMRError


class RehearsalError(LightHMRError):
    """A rehearsal run failed, or resumed losing more than one checkpoint interval."""


@dataclass
class RehearsalOptions:
    image_size: int = 64  # student input (a multiple of 32)
    teacher_size: int = 56  # teacher input (a multiple of 14)
    steps: int = 6
    ckpt_every: int = 2
    kill_after: int = 3  # SIGKILL once this step is logged (a step past a checkpoint)
    nproc: int = 2
    workers: int | None = 0  # data.num_workers; None: as shipped (see the module docstring)
    threads: int | None = 1  # run.threads per rank; None: as shipped
    timeout_s: float = 600.0


@dataclass
class RehearsalResult:
    config: str
    command: str  # train | distill
    teacher: str | None
    steps: int
    ckpt_every: int
    killed_at: int  # last step logged before the SIGKILL
    resumed_from: int  # step of the checkpoint the second launch resumed from
    lost_steps: int
    final_step: int
    validation: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)  # wall time of each launch, and per step


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_data(raw: dict, root: Path, image_size: int) -> dict[str, Path]:
    """Release-format data for every data set the config reads, an SMPL-X model, an init checkpoint."""
    from lighthmr_ros.body.synthetic_smplx import write_synthetic_smplx
    from lighthmr_ros.training import sample_data

    paths: dict[str, Path] = {"smplx": root / "smplx"}
    write_synthetic_smplx(paths["smplx"] / "SMPLX_NEUTRAL.npz", seed=0)
    sources = raw.get("data", {}).get("train", []) + raw.get("data", {}).get("val", [])
    for name in sorted({s["dataset"] for s in sources}):
        folder = paths[name] = root / name
        if name == "bedlam":
            sample_data.write_bedlam(folder, seed=0, split="training")
            sample_data.write_bedlam(folder, seed=1, split="validation")
        elif name == "3dpw":
            for i, split in enumerate(("train", "validation", "test")):
                sample_data.write_threedpw(folder, seed=i, split=split, name=f"rehearsal_{split}")
        elif name == "agora":
            sample_data.write_agora(folder, seed=0, split="train")
            sample_data.write_agora(folder, seed=1, split="validation")
        elif name == "synthetic":
            from lighthmr_ros.synth import SynthConfig, generate_scenes

            generate_scenes(
                folder, 10, seed=0, config=SynthConfig(width=160, height=120, max_people=2), progress=False
            )
        else:
            raise ConfigError(f"the rehearsal has no sample data for data set {name!r}")
    model = raw.get("model", {})
    if model.get("init_checkpoint"):
        from lighthmr_ros.model import create_model
        from lighthmr_ros.model.checkpoint import save_checkpoint

        student = create_model(
            model.get("name", "lighthmr_tinyvit5m"),
            body_model=model.get("body_model", "smplx"),
            smplx_model_dir=str(paths["smplx"]),
            image_size=image_size,
            **model.get("overrides", {}),
        )
        paths["init"] = save_checkpoint(root / "init" / "model.pt", student, {"stage": "rehearsal init"})
    return paths


def overrides(raw: dict, paths: dict[str, Path], out: Path, opt: RehearsalOptions) -> list[str]:
    """The ``--set`` list: sizes, steps and paths only (see the module docstring)."""
    sets = [
        f"model.image_size={opt.image_size}",
        f"run.max_steps={opt.steps}",
        f"run.ckpt_every={opt.ckpt_every}",
        f"run.val_every={opt.steps}",
        "run.log_every=1",
        f"optim.warmup_steps={min(2, opt.steps)}",
        f"run.output_dir={out}",
        "run.resume=true",
    ]
    if opt.workers is not None:
        sets.append(f"data.num_workers={opt.workers}")
    if opt.threads is not None:
        sets.append(f"run.threads={opt.threads}")
    for part in ("train", "val"):
        for i, src in enumerate(raw.get("data", {}).get(part, [])):
            sets.append(f"data.{part}.{i}.root={paths[src['dataset']]}")
    model = raw.get("model", {})
    if model.get("body_model", "smplx") == "smplx":
        sets.append(f"model.smplx_model_dir={paths['smplx']}")
    if model.get("init_checkpoint"):
        sets.append(f"model.init_checkpoint={paths['init']}")
    if raw.get("teacher") is not None:
        sets += [
            f"teacher.image_size={opt.teacher_size}",
            "teacher.checkpoint=null",
            f"teacher.smplx_model_dir={paths['smplx']}",
        ]
        if raw["teacher"].get("cache_dir"):
            sets.append(f"teacher.cache_dir={out / 'teacher_cache'}")
    return sets


def _logged(out: Path) -> list[dict]:
    path = out / "log.csv"
    if not path.is_file():
        return []
    with open(path) as f:
        return list(csv.DictReader(f))


def _last_step(rows: list[dict]) -> int:
    return max((int(r["step"]) for r in rows if r.get("step")), default=0)


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (torchrun starts ranks in sessions of their own: killpg misses them)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def kill_tree(proc: subprocess.Popen) -> list[int]:
    """SIGKILL the launcher and every process it started; returns once all of them are gone."""
    tree = [proc.pid, *_descendants(proc.pid)]
    for pid in tree:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()
    deadline = time.time() + 60
    while any(_state(pid) not in ("Z", "X") for pid in tree[1:]) and time.time() < deadline:
        time.sleep(0.1)
    return tree


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "X"


def _launch(cmd: list[str], env: dict, log_path: Path) -> subprocess.Popen:
    log = open(log_path, "ab")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _tail(path: Path, n: int = 3000) -> str:
    return path.read_text(errors="replace")[-n:] if path.is_file() else ""


def rehearse(
    config: str | Path, out_dir: str | Path, options: RehearsalOptions | None = None
) -> RehearsalResult:
    """Run ``config`` as shipped on generated data under torchrun, SIGKILL it mid-run, resume, check."""
    import torch

    from lighthmr_ros.training import config_path

    opt = options or RehearsalOptions()
    if not opt.ckpt_every < opt.kill_after < opt.steps:
        raise ConfigError(
            "the rehearsal kills between the first checkpoint and the end: "
            "need ckpt_every < kill_after < steps"
        )
    path = Path(config_path(str(config)))
    if not path.is_file():
        raise ConfigError(f"no stage config {path}: name a shipped one (bedlam_distill, 3dpw_finetune, "
                          "agora_finetune, synthetic_anny) or a YAML file")
    raw = yaml.safe_load(path.read_text()) or {}
    out = Path(out_dir).expanduser().resolve()
    run_dir, console = out / "run", out / "console.log"
    paths = write_data(raw, out / "data", opt.image_size)
    command = "distill" if raw.get("teacher") is not None else "train"
    sets = overrides(raw, paths, run_dir, opt)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")

    def cmd() -> list[str]:
        base = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            str(opt.nproc),
            "--master_addr",
            "127.0.0.1",
            "--master_port",
            str(_free_port()),
            "-m",
            "lighthmr_ros.cli",
            command,
            str(path),
        ]
        return base + [a for s in sets for a in ("--set", s)]

    t0 = time.time()
    proc = _launch(cmd(), env, console)
    killed_at = 0
    while True:
        killed_at = _last_step(_logged(run_dir))
        if killed_at >= opt.kill_after:
            tree = kill_tree(proc)  # torchrun and every rank, with no chance to clean up
            if any(_state(pid) not in ("Z", "X") for pid in tree):
                raise RehearsalError(f"{path.name}: a rank survived SIGKILL")
            killed_at = _last_step(_logged(run_dir))  # a step that completed while the kill was on its way
            break
        if proc.poll() is not None:
            raise RehearsalError(
                f"{path.name}: the first launch ended (exit {proc.returncode}) before step "
                f"{opt.kill_after}:\n{_tail(console)}"
            )
        if time.time() - t0 > opt.timeout_s:
            kill_tree(proc)
            raise RehearsalError(
                f"{path.name}: no step {opt.kill_after} within {opt.timeout_s:.0f} s:\n{_tail(console)}"
            )
        time.sleep(0.2)
    first_s = time.time() - t0
    last = run_dir / "checkpoints" / "last.pt"
    if not last.is_file():
        raise RehearsalError(f"{path.name}: killed at step {killed_at} with no checkpoint written")
    resumed_from = int(torch.load(last, map_location="cpu", weights_only=True)["step"])
    t1 = time.time()
    second = _launch(cmd(), env, console)
    try:
        code = second.wait(timeout=opt.timeout_s)
    except subprocess.TimeoutExpired:
        kill_tree(second)
        raise RehearsalError(
            f"{path.name}: the resumed run took over {opt.timeout_s:.0f} s:\n{_tail(console)}"
        ) from None
    if code != 0:
        raise RehearsalError(f"{path.name}: the resumed run failed (exit {code}):\n{_tail(console)}")
    rows = _logged(run_dir)
    timed = [r for r in rows if r.get("time_s")]
    times = [
        float(r["time_s"]) for r in timed[len(timed) - (opt.steps - resumed_from) :]
    ]  # the resumed launch
    result = RehearsalResult(
        config=path.stem,
        command=command,
        teacher=(raw.get("teacher") or {}).get("name"),
        steps=opt.steps,
        ckpt_every=opt.ckpt_every,
        killed_at=killed_at,
        resumed_from=resumed_from,
        lost_steps=killed_at - resumed_from,
        final_step=_last_step(rows),
        validation={k: v for k, v in rows[-1].items() if k.startswith("val_") and v not in ("", None)},
        seconds={
            "first_launch": round(first_s, 1),
            "resumed_launch": round(time.time() - t1, 1),
            "per_step": round((times[-1] - times[0]) / max(1, len(times) - 1), 2) if len(times) > 1 else None,
        },
    )
    if result.lost_steps > opt.ckpt_every:
        raise RehearsalError(
            f"{path.name}: killed at step {killed_at}, resumed from {resumed_from}: "
            f"{result.lost_steps} steps lost, more than one checkpoint interval ({opt.ckpt_every})"
        )
    if result.final_step != opt.steps or not (run_dir / "model.pt").is_file():
        raise RehearsalError(
            f"{path.name}: the resumed run stopped at step {result.final_step}, not {opt.steps}"
        )
    if not result.validation:
        raise RehearsalError(f"{path.name}: no validation metrics were logged at step {opt.steps}")
    (out / "rehearsal.json").write_text(json.dumps(asdict(result), indent=2))
    return result


__all__ = ["rehearse", "RehearsalOptions", "RehearsalResult", "RehearsalError", "write_data", "overrides"]
