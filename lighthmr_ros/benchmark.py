"""Side-by-side speed and size of the student and the teacher (``lighthmr bench``).

What makes the comparison fair:
- every model sees the same 640x480 RGB image through the same Predictor (letterbox, normalise,
  network, body model, Human records), at the same network input size;
- every forward reconstructs exactly ``persons`` people (default 4): the detection threshold is 0
  and ``max_humans`` is ``persons``, so the ``persons`` highest score-map peaks are decoded whatever
  the (random or trained) weights say;
- every model is built, warmed up and timed in a fresh process of its own (one after the other),
  as a user runs it: nothing one model's runtime leaves behind (OpenMP or onnxruntime thread pools,
  thread-count switches, oneDNN caches, heap state) can slow another. The bench used to interleave
  all models in one process; on a 2-core AVX2 host that measured the torch student at 1,700 ms
  where a Predictor alone took 115 ms. Medians (and min/max) over ``repeats`` are reported, with
  the load average before and after each model so a busy machine shows.
- every row states the CPU capability it ran on (AVX2 / AVX512 / AVX512-BF16 / AMX).

Stages come from forward hooks on the model's own modules (no copy of the forward):
preprocess (predict() start -> encoder), encoder, detection (score head, NMS, peaks, offset head),
decoder (camera rays, HPH, distance), body_model (the body model's forward), postprocess (camera
placement, rotation vectors, Human records). On CUDA the boundaries are CUDA events.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
import resource
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from lighthmr_ros.device import cpu_capability, cpu_has_native
from lighthmr_ros.perf import heap_kept, torch_threads

STAGES = ("preprocess", "encoder", "detection", "decoder", "body_model", "postprocess")
TEACHER = "multihmr_vits14"
STUDENT = "lighthmr_tinyvit5m"
ANNY_TEACHERS = {"s": "multihmr_anny_vits14", "b": "multihmr_anny_vitb14", "l": "multihmr_anny_vitl14"}
IMAGE_WH = (640, 480)


@dataclass
class Entry:
    """One model at one input size, precision and backend."""

    key: str  # unique label in the table
    model: str  # config name
    body_model: str
    image_size: int
    precision: str = "fp32"
    backend: str = "torch"
    predictor: object = None
    times: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STAGES + ("total",)})
    result: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------- timing hooks
class StageClock:
    """Timestamps at stage boundaries: perf_counter on CPU, CUDA events on a GPU."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.marks: dict[str, object] = {}

    def mark(self, name: str) -> None:
        if self.cuda:
            ev = torch.cuda.Event(enable_timing=True)
            ev.record()
            self.marks[name] = ev
        else:
            self.marks[name] = time.perf_counter()

    def elapsed_ms(self, a: str, b: str) -> float:
        if self.cuda:
            return float(self.marks[a].elapsed_time(self.marks[b]))
        return (self.marks[b] - self.marks[a]) * 1000.0


def model_parts(model: torch.nn.Module) -> dict:
    """The modules that bound the stages, and the module names of each part for the FLOP count.

    Students and the v1 teacher (HMRModel): backbone -> detection heads -> HPH decoder -> body.
    The Anny teacher (MultiHMRAnny): encoder (DINOv2 + its detection and FOV heads) -> decoder -> body.
    """
    if hasattr(model, "backbone"):
        # the decoder stage starts once the offset head is done (camera rays + HPH + distance)
        return {"encoder": model.backbone, "decoder_start": (model.mlp_offset, "post"),
                "flops": {"encoder": ("backbone",), "detection": ("mlp_classif", "mlp_offset"),
                          "decoder": ("x_attention_head",), "body_model": (model.body_path,)}}
    return {"encoder": model.encoder, "decoder_start": (model.dec_to_token, "pre"),
            "flops": {"encoder": ("encoder",), "detection": ("encoder.mlp_det", "encoder.mlp_fov_unique"),
                      "decoder": ("dec_to_token", "decoder", "mlp_offset", "mlp_pose", "mlp_shape", "mlp_dist"),
                      "body_model": ("body_model",)}}


@contextlib.contextmanager
def stage_hooks(model: torch.nn.Module, clock: StageClock):
    """Mark stage boundaries from forward hooks on the model's parts; removed on exit."""
    handles = []

    def pre(name):
        return lambda module, args: clock.mark(name)

    def post(name):
        return lambda module, args, out: clock.mark(name)

    parts = model_parts(model)
    handles.append(parts["encoder"].register_forward_pre_hook(pre("encoder")))
    handles.append(parts["encoder"].register_forward_hook(post("detection")))
    module, when = parts["decoder_start"]
    if when == "pre":
        handles.append(module.register_forward_pre_hook(pre("decoder")))
    else:
        handles.append(module.register_forward_hook(post("decoder")))
    handles.append(model.body.register_forward_pre_hook(pre("body_model")))
    handles.append(model.body.register_forward_hook(post("postprocess")))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def timed_predict(entry: Entry, image: np.ndarray, persons: int) -> dict[str, float]:
    """One predict() with stage marks; returns milliseconds per stage and the total."""
    pred = entry.predictor
    if entry.backend != "torch":  # whole-pipeline time only (the graph hides the stages)
        t0 = time.perf_counter()
        humans = pred.predict(image, det_threshold=0.0, max_humans=persons)
        total = (time.perf_counter() - t0) * 1000.0
        _check_persons(humans, persons, entry.key)
        return {"total": total}
    clock = StageClock(pred.device)
    with stage_hooks(pred.model, clock):
        clock.mark("preprocess")
        humans = pred.predict(image, det_threshold=0.0, max_humans=persons)
        clock.mark("end")
    if clock.cuda:
        torch.cuda.synchronize()
    _check_persons(humans, persons, entry.key)
    bounds = list(STAGES) + ["end"]
    out = {s: clock.elapsed_ms(bounds[i], bounds[i + 1]) for i, s in enumerate(STAGES)}
    out["total"] = clock.elapsed_ms("preprocess", "end")
    return out


def _check_persons(humans, persons: int, key: str) -> None:
    if len(humans) != persons:
        raise RuntimeError(f"{key}: expected {persons} persons per forward, got {len(humans)}")


# ---------------------------------------------------------------------------------- size and flops
def flop_counter():
    """torch's FlopCounterMode, also counting the CPU flash-attention kernel.

    Why: FlopCounterMode has formulas for the CUDA attention kernels only; on the CPU,
    ``F.scaled_dot_product_attention`` runs ``_scaled_dot_product_flash_attention_for_cpu``, which
    it counts as 0 FLOPs. That dropped half of the teacher ViT-S's work at 672 px (its global
    attention over 2,305 tokens) and none of the student's (TinyViT's window attention is two
    matmuls), so the GFLOPs ratio read twice what it is. Same formula as the CUDA kernels.
    """
    from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

    def cpu_flash_flops(query, key, value, *args, **kwargs) -> int:
        return sdpa_flop_count(query.shape, key.shape, value.shape)

    cpu_flash_flops._get_raw = True  # takes the tensors themselves (FlopCounterMode's convention)
    cpu_flash = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    return FlopCounterMode(
        display=False, custom_mapping={cpu_flash: cpu_flash_flops} if cpu_flash is not None else None
    )


def count_flops(entry: Entry, image: np.ndarray, persons: int) -> dict[str, float]:
    """GFLOPs of one forward (torch's FlopCounterMode: matmuls, convolutions, attention) per part."""
    pred = entry.predictor
    model = pred.model
    batch, K_net, _, _ = pred.prepare([image], [None])
    if getattr(pred, "estimates_camera", False):
        K_net = None  # the Anny teacher's own field of view, as predict() runs it without a K
    counter = flop_counter()
    with torch.inference_mode(), pred.autocast(), counter:
        model(batch, K_net, det_threshold=0.0, max_humans=persons)
    counts = counter.get_flop_counts()
    total = sum(counter.get_flop_counts().get("Global", {}).values())

    def part(*names: str) -> float:
        s = 0
        for key, ops in counts.items():
            tail = key.split(".", 1)[1] if "." in key else ""
            if tail in names:
                s += sum(ops.values())
        return s / 1e9

    names = model_parts(model)["flops"]
    return {**{stage: part(*names[stage]) for stage in ("encoder", "detection", "decoder", "body_model")},
            "total": total / 1e9}


def count_params(model) -> dict[str, float]:
    """Learned parameters in millions (body-model tensors are data and not counted)."""
    from lighthmr_ros.model import count_parameters

    return {k: v / 1e6 for k, v in count_parameters(model).items()}


# ---------------------------------------------------------------------------------- memory
def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _status_kb(key: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return float(line.split()[1])
    except OSError:
        pass
    return None


def _rss_mb() -> float:
    kb = _status_kb("VmRSS")
    return kb / 1024 if kb is not None else float("nan")


def _peak_rss_mb() -> float:
    kb = _status_kb("VmHWM")
    if kb is None:
        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024


# ---------------------------------------------------------------------------------- the run
def bench_image(seed: int = 0) -> np.ndarray:
    """A fixed 640x480 test image (smooth noise: content does not change the work done)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(30, 40, 3), dtype=np.uint8)
    import cv2

    return cv2.resize(small, IMAGE_WH, interpolation=cv2.INTER_CUBIC)


def machine_info() -> dict:
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "malloc_keeps_freed_memory": heap_kept(),  # lighthmr_ros.perf.keep_freed_memory: all rows alike
        "cpu_native_bf16": cpu_has_native("bf16"),
        "cpu_capability": cpu_capability(),  # AVX2 / AVX512 / AVX512-BF16 / AMX
        "cpus_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
    }
    with contextlib.suppress(OSError):
        info["load_average"] = list(os.getloadavg())
    return info


def entry_specs(
    sizes,
    include_teacher,
    include_student_smplx,
    onnx,
    precisions,
    checkpoint,
    plain: bool = False,
    anny_teachers: tuple[str, ...] = (),
) -> list[dict]:
    """What to measure: one dict per (model, body model, size, precision, backend).

    ``plain``: also the student without lighthmr_ros.perf's model rewrites (BatchNorm folding,
    channels_last, written-out window attention, oneDNN linears): plain torch eager, the "before" of those speed-ups.
    (keep_freed_memory is process-wide and applies to every row.)
    """
    specs = []
    for size in sizes:
        for variant in anny_teachers:  # fp32 only: the real-image teacher as a user would run it on a CPU
            specs.append({"key": f"anny_teacher_{variant}@{size}", "model": ANNY_TEACHERS[variant],
                          "body_model": None, "image_size": size, "precision": "fp32", "backend": "torch",
                          "checkpoint": None})
        for prec in precisions:
            suffix = f"@{size}" + ("" if prec == "fp32" else f"/{prec}")
            specs.append(
                {
                    "key": f"student{suffix}",
                    "model": STUDENT,
                    "body_model": None,
                    "image_size": size,
                    "precision": prec,
                    "backend": "torch",
                    "checkpoint": checkpoint,
                }
            )
            if plain and prec == "fp32":
                specs.append(
                    {
                        "key": f"student_plain{suffix}",
                        "model": STUDENT,
                        "body_model": None,
                        "image_size": size,
                        "precision": prec,
                        "backend": "torch",
                        "checkpoint": checkpoint,
                        "optimize": False,
                    }
                )
            if include_student_smplx and checkpoint is None:
                specs.append(
                    {
                        "key": f"student_smplx{suffix}",
                        "model": STUDENT,
                        "body_model": "smplx",
                        "image_size": size,
                        "precision": prec,
                        "backend": "torch",
                        "checkpoint": None,
                    }
                )
            if onnx and prec == "fp32":  # onnxruntime: fp32 (same outputs as torch) and int8 (approximate)
                for key, onnx_prec in (("student_onnx", "fp32"), ("student_onnx_int8", "int8")):
                    specs.append(
                        {
                            "key": f"{key}{suffix}",
                            "model": STUDENT,
                            "body_model": None,
                            "image_size": size,
                            "precision": onnx_prec,
                            "backend": "onnxruntime",
                            "checkpoint": checkpoint,
                        }
                    )
            if include_teacher:
                specs.append(
                    {
                        "key": f"teacher{suffix}",
                        "model": TEACHER,
                        "body_model": "smplx",
                        "image_size": size,
                        "precision": prec,
                        "backend": "torch",
                        "checkpoint": None,
                    }
                )
    return specs


def build_entry(spec: dict, device, smplx_dir: Path) -> Entry:
    """The Predictor of one spec (seeded random weights unless a checkpoint is given)."""
    from lighthmr_ros.inference import Predictor

    torch.manual_seed(0)
    ckpt = spec["checkpoint"]
    kwargs = {"backend": spec["backend"]} if spec["backend"] != "torch" else {}
    if spec.get("optimize") is False:  # a model instance: the Predictor leaves it as it is
        from lighthmr_ros.model import create_model
        from lighthmr_ros.model.checkpoint import load_checkpoint

        if ckpt:
            ckpt = load_checkpoint(ckpt, smplx_model_dir=smplx_dir)
        else:
            ckpt = create_model(
                spec["model"], body_model=spec["body_model"], smplx_model_dir=smplx_dir, image_size=spec["image_size"]
            )
        spec = {**spec, "image_size": None}
    pred = Predictor(
        checkpoint=ckpt,
        config=None if ckpt else spec["model"],
        device=device,
        precision=spec["precision"],
        body_model=spec["body_model"],
        smplx_model_dir=smplx_dir,
        image_size=spec["image_size"],
        **kwargs,
    )
    return Entry(
        spec["key"],
        pred.model.config.name,
        pred.body_model_name,
        pred.image_size,
        spec["precision"],
        spec["backend"],
        pred,
    )


@dataclass(frozen=True)
class BenchOptions:
    """What ``lighthmr bench`` measures and how (see the module docstring)."""

    sizes: tuple[int, ...] = (448, 672)
    repeats: int = 5
    warmup: int = 2
    persons: int = 4
    threads: int | None = None  # torch intra-op threads (None: torch's default, as a Predictor runs)
    device: str = "auto"
    include_teacher: bool = True
    include_student_smplx: bool = True
    onnx: bool = False
    fp16: bool | None = None  # default: on with CUDA
    bf16: bool = False
    checkpoint: str | None = None
    memory: bool = True
    plain: bool = False
    anny_teachers: tuple[str, ...] = ()  # "s", "b", "l": Multi-HMR-Anny ViT-S/B/L rows (random weights)


def _measure_model(spec: dict, opts: BenchOptions, smplx_dir: Path) -> dict:
    """Build one model, count it, warm it up and time it (runs in a fresh process: _model_child)."""
    if opts.threads:
        torch.set_num_threads(opts.threads)
    image = bench_image()
    before = _rss_mb()
    entry = build_entry(spec, opts.device, smplx_dir)
    dev = entry.predictor.device
    built = _rss_mb()
    result = {
        "params_m": count_params(entry.predictor.model),
        "gflops": count_flops(entry, image, opts.persons) if entry.backend == "torch" else None,
        "body_vertices": int(entry.predictor.num_vertices),
    }
    cuda = dev.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(dev)
        base = torch.cuda.memory_allocated(dev) / 2**20
    peak_reset = _reset_peak_rss()
    for _ in range(max(1, opts.warmup)):
        timed_predict(entry, image, opts.persons)
    if not opts.memory:
        result["memory"] = None
    elif cuda:
        torch.cuda.synchronize()
        params = sum(p.numel() * p.element_size() for p in entry.predictor.model.parameters()) / 2**20
        result["memory"] = {
            "model_mb": params,
            "forward_peak_mb": torch.cuda.max_memory_allocated(dev) / 2**20 - base,
            "method": "torch.cuda.max_memory_allocated",
        }
    elif peak_reset:
        result["memory"] = {
            "model_mb": built - before,
            "forward_peak_mb": _peak_rss_mb() - built,
            "method": "fresh process, VmRSS/VmHWM",
        }
    else:
        result["memory"] = {
            "model_mb": None,
            "forward_peak_mb": None,
            "process_peak_mb": _peak_rss_mb(),
            "method": "ru_maxrss (process lifetime)",
        }
    load_before = _load_average()
    for _ in range(opts.repeats):
        for k, v in timed_predict(entry, image, opts.persons).items():
            entry.times[k].append(v)
    return {
        "entry": {
            "key": entry.key,
            "model": entry.model,
            "body_model": entry.body_model,
            "image_size": entry.image_size,
            "precision": entry.precision,
            "backend": entry.backend,
            "device": str(dev),
            "precision_reason": entry.predictor.precision_reason,
        },
        "times": {k: v for k, v in entry.times.items() if v},
        "result": result,
        "process": {
            "pid": os.getpid(),
            "threads": torch.get_num_threads(),
            "cpu": cpu_capability(),
            "load_average": [load_before, _load_average()],
        },
    }


def _model_child(spec: dict, opts: BenchOptions, smplx_dir: str, queue) -> None:
    try:
        queue.put(_measure_model(spec, opts, Path(smplx_dir)))
    except BaseException as exc:  # reported by the parent
        queue.put({"error": f"{type(exc).__name__}: {exc}"})


def measure_in_fresh_process(spec: dict, opts: BenchOptions, smplx_dir: Path) -> dict:
    """_measure_model in a spawned process (nothing inherited from the parent's torch or onnxruntime)."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_model_child, args=(spec, opts, str(smplx_dir), queue))
    proc.start()
    try:
        out = queue.get(timeout=3600)
    finally:
        proc.join(timeout=60)
    if "error" in out:
        raise RuntimeError(f"measuring {spec['key']} failed: {out['error']}")
    return out


def _load_average() -> list[float] | None:
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


def run_bench(options: BenchOptions | None = None, progress=None, **kwargs) -> dict:
    """Measure every model (each in a fresh process) and return the JSON-ready result.

    Pass a :class:`BenchOptions` or its fields as keywords.
    """
    from lighthmr_ros.body.synthetic_smplx import write_synthetic_smplx
    from lighthmr_ros.device import resolve_device

    opts = options or BenchOptions(**{k: tuple(v) if k == "sizes" else v for k, v in kwargs.items()})
    dev = resolve_device(opts.device)
    opts = dataclasses.replace(opts, device=str(dev))
    fp16 = opts.fp16 if opts.fp16 is not None else dev.type == "cuda"
    precisions = ["fp32"] + (["fp16"] if fp16 else []) + (["bf16"] if opts.bf16 else [])
    say = progress or (lambda msg: None)
    load_start = _load_average()
    measured = []
    with tempfile.TemporaryDirectory(prefix="lighthmr_bench_") as tmp:
        smplx_dir = Path(tmp)
        write_synthetic_smplx(smplx_dir / "SMPLX_NEUTRAL.npz")
        specs = entry_specs(
            opts.sizes,
            opts.include_teacher,
            opts.include_student_smplx,
            opts.onnx,
            precisions,
            opts.checkpoint,
            opts.plain,
            opts.anny_teachers,
        )
        for spec in specs:
            say(f"{spec['key']}: build, warm-up and {opts.repeats} timed forwards in a fresh process")
            measured.append(measure_in_fresh_process(spec, opts, smplx_dir))
    models = []
    for m in measured:
        times = m["times"]
        lat = {k: statistics.median(v) for k, v in times.items()}
        spread = {k: [min(v), max(v)] for k, v in times.items()}
        models.append(
            {
                **m["entry"],
                "cpu": m["process"]["cpu"],
                "pid": m["process"]["pid"],
                "latency_ms": lat,
                "latency_min_max_ms": spread,
                "load_average_before_after": m["process"]["load_average"],
                **m["result"],
            }
        )
    threads = measured[0]["process"]["threads"] if measured else torch.get_num_threads()
    with torch_threads(threads):  # the machine info states the thread count the models ran with
        machine = {**machine_info(), "load_average_start": load_start}
    result = {
        "machine": machine,
        "settings": {
            "sizes": list(opts.sizes),
            "repeats": opts.repeats,
            "warmup": opts.warmup,
            "persons": opts.persons,
            "image": f"{IMAGE_WH[0]}x{IMAGE_WH[1]} RGB",
            "device": str(dev),
            "precisions": precisions,
            "threads": threads,
            "cpu": cpu_capability(),
            "notes": [
                f"every forward reconstructs exactly {opts.persons} persons (detection threshold 0, "
                f"max_humans={opts.persons})",
                "teacher and student_smplx use a synthetic SMPL-X file written to a temporary folder "
                "(about 850 vertices, not the licensed 10,475-vertex mesh): their body_model stage is cheaper "
                "than with real SMPL-X",
                "each model is measured in a fresh process of its own, one after the other; latencies are medians",
                "weights are random (checkpoint: %s); speed does not depend on weight values"
                % (opts.checkpoint or "none"),
            ],
        },
        "models": models,
    }
    result["ratios"] = compute_ratios(models)
    return result


def compute_ratios(models: list[dict]) -> dict:
    """Student / teacher ratios per size and precision (and ONNX vs torch speed-up of the student)."""
    by = {m["key"]: m for m in models}
    ratios = {}
    for m in models:
        if not m["key"].startswith("teacher"):
            continue
        suffix = m["key"][len("teacher") :]
        for student in ("student", "student_smplx"):
            s = by.get(student + suffix)
            if s is None:
                continue
            r = {
                "latency": s["latency_ms"]["total"] / m["latency_ms"]["total"],
                "params": s["params_m"]["total"] / m["params_m"]["total"],
            }
            if s.get("gflops") and m.get("gflops"):
                r["gflops"] = s["gflops"]["total"] / m["gflops"]["total"]
                r["network_latency"] = _network_ms(s) / _network_ms(m)
            ms, mt = s.get("memory") or {}, m.get("memory") or {}
            if ms.get("forward_peak_mb") and mt.get("forward_peak_mb"):
                r["forward_memory"] = ms["forward_peak_mb"] / mt["forward_peak_mb"]
            ratios[f"{student}/teacher{suffix}"] = r
    for m in models:
        if m["key"].startswith("student_plain"):
            s = by.get("student" + m["key"][len("student_plain") :])
            if s:
                ratios[f"torch_rewrites_speedup{m['key'][len('student_plain') :]}"] = {
                    "latency": m["latency_ms"]["total"] / s["latency_ms"]["total"]
                }
        if m["backend"] == "onnxruntime":
            name, suffix = m["key"].split("@", 1)  # student_onnx or student_onnx_int8
            suffix = "@" + suffix
            tag = "onnx" + name[len("student_onnx") :]  # onnx or onnx_int8
            s = by.get("student" + suffix)
            if s:
                ratios[f"{tag}_speedup{suffix}"] = {"latency": s["latency_ms"]["total"] / m["latency_ms"]["total"]}
            p = by.get("student_plain" + suffix)
            if p:
                ratios[f"{tag}_speedup_vs_plain{suffix}"] = {
                    "latency": p["latency_ms"]["total"] / m["latency_ms"]["total"]
                }
            t = by.get("teacher" + suffix)
            if t:
                ratios[f"{name}/teacher{suffix}"] = {"latency": m["latency_ms"]["total"] / t["latency_ms"]["total"]}
    return ratios


def _network_ms(m: dict) -> float:
    lat = m["latency_ms"]
    return sum(lat.get(k, 0.0) for k in ("encoder", "detection", "decoder"))


# ---------------------------------------------------------------------------------- printing
def format_table(result: dict) -> str:
    cols = ["params M", "GFLOPs"] + [s.replace("_model", "") for s in STAGES] + ["total ms", "model MB", "fwd MB"]
    lines = [f"{'model':<24}{'body':>6}{'cpu':>13}" + "".join(f"{c:>12}" for c in cols)]
    for m in result["models"]:
        lat = m["latency_ms"]
        vals = [f"{m['params_m']['total']:.2f}", f"{m['gflops']['total']:.1f}" if m.get("gflops") else "-"]
        vals += [f"{lat[s]:.1f}" if s in lat else "-" for s in STAGES]
        mem = m.get("memory") or {}
        vals += [f"{lat['total']:.1f}"] + [
            f"{mem[k]:.0f}" if mem.get(k) is not None else "-" for k in ("model_mb", "forward_peak_mb")
        ]
        lines.append(f"{m['key']:<24}{m['body_model']:>6}{m.get('cpu', '-'):>13}" + "".join(f"{v:>12}" for v in vals))
    s = result["settings"]
    lines.append(
        f"({s['persons']} persons per forward, {s['image']} image, device {s['device']}, {s['threads']} threads, "
        f"median of {s['repeats']} after {s['warmup']} warm-up, each model in a fresh process)"
    )
    if result["ratios"]:
        lines.append("ratios:")
        for k, r in result["ratios"].items():
            lines.append(f"  {k:<32}" + "  ".join(f"{n} {v:.3f}" for n, v in r.items() if v is not None))
    for note in s["notes"]:
        lines.append(f"note: {note}")
    return "\n".join(lines)


def write_json(result: dict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=_json_default))
    return path


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if dataclasses.is_dataclass(o):
        return dataclasses.asdict(o)
    return str(o)


def markdown_table(result: dict) -> str:
    """The table and ratios as Markdown (for docs/performance.md and the README)."""
    head = ["model @ size", "body", "cpu", "params (M)", "GFLOPs", *STAGES, "total (ms)", "model MB", "forward MB"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in result["models"]:
        lat, mem = m["latency_ms"], m.get("memory") or {}
        cells = [
            m["key"],
            m["body_model"],
            m.get("cpu", "-"),
            f"{m['params_m']['total']:.2f}",
            f"{m['gflops']['total']:.1f}" if m.get("gflops") else "-",
        ]
        cells += [f"{lat[s]:.1f}" if s in lat else "-" for s in STAGES]
        cells += [f"**{lat['total']:.1f}**"] + [
            f"{mem[k]:.0f}" if mem.get(k) is not None else "-" for k in ("model_mb", "forward_peak_mb")
        ]
        rows.append("| " + " | ".join(cells) + " |")
    lines = rows + ["", "| ratio | value |", "|---|---|"]
    for k, r in result["ratios"].items():
        lines.append(f"| {k} | " + ", ".join(f"{n} {v:.3f}" for n, v in r.items() if v is not None) + " |")
    node = result.get("node")
    if node:
        lines += [
            "",
            "| node latency | ms | x Predictor |",
            "|---|---|---|",
            f"| Predictor.predict() | {node['predictor_ms']:.1f} | 1.000 |",
            f"| node: image published -> HumanMeshArray received | {node['node_end_to_end_ms']:.1f} "
            f"| {node['ratio_end_to_end']:.3f} |",
            f"| node: inside (receive -> publish) | {node['node_internal_ms']:.1f} | {node['ratio_internal']:.3f} |",
        ]
    return "\n".join(lines)
