"""Side-by-side speed and size of the student and the teacher (``lighthmr bench``).

What makes the comparison fair:
- every model sees the same 640x480 RGB image through the same Predictor (letterbox, normalise,
  network, body model, Human records), at the same network input size;
- every forward reconstructs exactly ``persons`` people (default 4): the detection threshold is 0
  and ``max_humans`` is ``persons``, so the ``persons`` highest score-map peaks are decoded whatever
  the (random or trained) weights say;
- models are measured interleaved (one forward of each in turn, ``repeats`` times, after warm-up),
  so load from other processes on a shared machine hits all of them alike; medians are reported.

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
from lighthmr_ros.perf import heap_kept

STAGES = ("preprocess", "encoder", "detection", "decoder", "body_model", "postprocess")
TEACHER = "multihmr_vits14"
STUDENT = "lighthmr_tinyvit5m"
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


@contextlib.contextmanager
def stage_hooks(model: torch.nn.Module, clock: StageClock):
    """Mark stage boundaries from forward hooks on the model's parts; removed on exit."""
    handles = []

    def pre(name):
        return lambda module, args: clock.mark(name)

    def post(name):
        return lambda module, args, out: clock.mark(name)

    handles.append(model.backbone.register_forward_pre_hook(pre("encoder")))
    handles.append(model.backbone.register_forward_hook(post("detection")))
    handles.append(model.mlp_offset.register_forward_hook(post("decoder")))
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
    return FlopCounterMode(display=False, custom_mapping={cpu_flash: cpu_flash_flops} if cpu_flash is not None else None)


def count_flops(entry: Entry, image: np.ndarray, persons: int) -> dict[str, float]:
    """GFLOPs of one forward (torch's FlopCounterMode: matmuls, convolutions, attention) per part."""
    pred = entry.predictor
    model = pred.model
    batch, K_net, _, _ = pred.prepare([image], [None])
    counter = flop_counter()
    with torch.inference_mode(), pred._autocast(), counter:
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

    body_names = ("body_model",) if "body_model" in dict(model.named_children()) else (f"smpl_layer.{model._body_key}",)
    return {
        "encoder": part("backbone"),
        "detection": part("mlp_classif", "mlp_offset"),
        "decoder": part("x_attention_head"),
        "body_model": part(*body_names),
        "total": total / 1e9,
    }


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
    }
    with contextlib.suppress(OSError):
        info["load_average"] = list(os.getloadavg())
    return info


def entry_specs(sizes, include_teacher, include_student_smplx, onnx, precisions, checkpoint, plain: bool = False) -> list[dict]:
    """What to measure: one dict per (model, body model, size, precision, backend).

    ``plain``: also the student without lighthmr_ros.perf's model rewrites (BatchNorm folding,
    channels_last, written-out window attention, oneDNN linears): plain torch eager, the "before" of those speed-ups.
    (keep_freed_memory is process-wide and applies to every row.)
    """
    specs = []
    for size in sizes:
        for prec in precisions:
            suffix = f"@{size}" + ("" if prec == "fp32" else f"/{prec}")
            specs.append({"key": f"student{suffix}", "model": STUDENT, "body_model": None, "image_size": size, "precision": prec,
                          "backend": "torch", "checkpoint": checkpoint})
            if plain and prec == "fp32":
                specs.append({"key": f"student_plain{suffix}", "model": STUDENT, "body_model": None, "image_size": size,
                              "precision": prec, "backend": "torch", "checkpoint": checkpoint, "optimize": False})
            if include_student_smplx and checkpoint is None:
                specs.append({"key": f"student_smplx{suffix}", "model": STUDENT, "body_model": "smplx", "image_size": size,
                              "precision": prec, "backend": "torch", "checkpoint": None})
            if onnx and prec == "fp32":  # onnxruntime: fp32 (same outputs as torch) and int8 (approximate)
                for key, onnx_prec in (("student_onnx", "fp32"), ("student_onnx_int8", "int8")):
                    specs.append({"key": f"{key}{suffix}", "model": STUDENT, "body_model": None, "image_size": size,
                                  "precision": onnx_prec, "backend": "onnxruntime", "checkpoint": checkpoint})
            if include_teacher:
                specs.append({"key": f"teacher{suffix}", "model": TEACHER, "body_model": "smplx", "image_size": size,
                              "precision": prec, "backend": "torch", "checkpoint": None})
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
            ckpt = create_model(spec["model"], body_model=spec["body_model"], smplx_model_dir=smplx_dir, image_size=spec["image_size"])
        spec = {**spec, "image_size": None}
    pred = Predictor(checkpoint=ckpt, config=None if ckpt else spec["model"], device=device, precision=spec["precision"],
                     body_model=spec["body_model"], smplx_model_dir=smplx_dir, image_size=spec["image_size"], **kwargs)
    return Entry(spec["key"], pred.model.config.name, pred.body_model_name, pred.image_size, spec["precision"], spec["backend"], pred)


def _memory_child(spec: dict, device: str, smplx_dir: str, threads: int, persons: int, warmup: int, queue) -> None:
    """In a fresh process: RSS growth from building the model, then peak RSS growth of its forwards."""
    try:
        torch.set_num_threads(threads)
        image = bench_image()
        before = _rss_mb()
        entry = build_entry(spec, device, Path(smplx_dir))
        built = _rss_mb()
        _reset_peak_rss()
        for _ in range(max(1, warmup)):
            timed_predict(entry, image, persons)
        queue.put({"model_mb": built - before, "forward_peak_mb": _peak_rss_mb() - built, "method": "fresh process, VmRSS/VmHWM"})
    except BaseException as exc:  # reported by the parent
        queue.put({"error": f"{type(exc).__name__}: {exc}"})


def measure_memory(entry_spec: dict, dev: torch.device, smplx_dir: Path, persons: int, warmup: int, entry: Entry, image) -> dict:
    """Model and forward memory: CUDA allocator counters on a GPU; on the CPU a fresh child process per
    model (in one process the allocator reuses freed memory, so per-model peaks would not separate)."""
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(dev)
        base = torch.cuda.memory_allocated(dev) / 2**20
        for _ in range(max(1, warmup)):
            timed_predict(entry, image, persons)
        torch.cuda.synchronize()
        params = sum(p.numel() * p.element_size() for p in entry.predictor.model.parameters()) / 2**20
        return {"model_mb": params, "forward_peak_mb": torch.cuda.max_memory_allocated(dev) / 2**20 - base,
                "method": "torch.cuda.max_memory_allocated"}
    if not Path("/proc/self/clear_refs").exists():
        for _ in range(max(1, warmup)):
            timed_predict(entry, image, persons)
        return {"model_mb": None, "forward_peak_mb": None, "process_peak_mb": _peak_rss_mb(), "method": "ru_maxrss (process lifetime)"}
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_memory_child, args=(entry_spec, str(dev), str(smplx_dir), torch.get_num_threads(), persons, warmup, queue))
    proc.start()
    try:
        out = queue.get(timeout=1800)
    finally:
        proc.join(timeout=60)
    if "error" in out:
        raise RuntimeError(f"memory measurement of {entry_spec['key']} failed: {out['error']}")
    return out


def run_bench(
    sizes=(448, 672),
    repeats: int = 5,
    warmup: int = 2,
    persons: int = 4,
    threads: int | None = None,
    device: str = "auto",
    include_teacher: bool = True,
    include_student_smplx: bool = True,
    onnx: bool = False,
    fp16: bool | None = None,
    checkpoint: str | None = None,
    memory: bool = True,
    plain: bool = False,
    progress=None,
    bf16: bool = False,
) -> dict:
    """Measure everything in one process and return the JSON-ready result (see module docstring).

    ``threads`` sets torch's intra-op threads for the run (restored afterwards). ``fp16`` / ``bf16``
    add rows of the student and the teacher under that autocast precision (fp16: default on CUDA).
    """
    before = torch.get_num_threads()
    try:
        return _run_bench(sizes, repeats, warmup, persons, threads, device, include_teacher, include_student_smplx, onnx,
                          fp16, checkpoint, memory, plain, progress, bf16)
    finally:
        torch.set_num_threads(before)


def _run_bench(sizes, repeats, warmup, persons, threads, device, include_teacher, include_student_smplx, onnx, fp16,
               checkpoint, memory, plain, progress, bf16) -> dict:
    from lighthmr_ros.body.synthetic_smplx import write_synthetic_smplx
    from lighthmr_ros.inference import resolve_device

    if threads:
        torch.set_num_threads(threads)
    dev = resolve_device(device)
    precisions = ["fp32"] + (["fp16"] if (fp16 if fp16 is not None else dev.type == "cuda") else []) + (["bf16"] if bf16 else [])
    say = progress or (lambda msg: None)
    load_start = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    image = bench_image()
    with tempfile.TemporaryDirectory(prefix="lighthmr_bench_") as tmp:
        smplx_dir = Path(tmp)
        write_synthetic_smplx(smplx_dir / "SMPLX_NEUTRAL.npz")
        say("building models (teacher and SMPL-X student use a synthetic SMPL-X file: no licensed files needed)")
        specs = entry_specs(sizes, include_teacher, include_student_smplx, onnx, precisions, checkpoint, plain)
        entries = [build_entry(spec, device, smplx_dir) for spec in specs]
        for e in entries:
            e.result["params_m"] = count_params(e.predictor.model)
            e.result["gflops"] = count_flops(e, image, persons) if e.backend == "torch" else None
            e.result["body_vertices"] = int(e.predictor.num_vertices)
        for spec, e in zip(specs, entries):  # warm-up and memory per model
            say(f"warm-up and memory {e.key}")
            e.result["memory"] = measure_memory(spec, dev, smplx_dir, persons, warmup, e, image) if memory else None
            for _ in range(max(1, warmup)):
                timed_predict(e, image, persons)
        for r in range(repeats):  # interleaved: shared-machine load hits every model alike
            say(f"repeat {r + 1}/{repeats}")
            for e in entries:
                for k, v in timed_predict(e, image, persons).items():
                    e.times[k].append(v)
    models = []
    for e in entries:
        lat = {k: statistics.median(v) for k, v in e.times.items() if v}
        spread = {k: [min(v), max(v)] for k, v in e.times.items() if v}
        models.append({
            "key": e.key, "model": e.model, "body_model": e.body_model, "image_size": e.image_size,
            "precision": e.precision, "backend": e.backend, "device": str(e.predictor.device),
            "latency_ms": lat, "latency_min_max_ms": spread, **e.result,
        })
    result = {
        "machine": {**machine_info(), "load_average_start": load_start},
        "settings": {
            "sizes": list(sizes), "repeats": repeats, "warmup": warmup, "persons": persons,
            "image": f"{IMAGE_WH[0]}x{IMAGE_WH[1]} RGB", "device": str(dev), "precisions": precisions,
            "threads": torch.get_num_threads(),
            "notes": [
                f"every forward reconstructs exactly {persons} persons (detection threshold 0, max_humans={persons})",
                "teacher and student_smplx use a synthetic SMPL-X file written to a temporary folder "
                "(about 850 vertices, not the licensed 10,475-vertex mesh): their body_model stage is cheaper than with real SMPL-X",
                "models are measured interleaved; latencies are medians",
                "weights are random (checkpoint: %s); speed does not depend on weight values" % (checkpoint or "none"),
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
        suffix = m["key"][len("teacher"):]
        for student in ("student", "student_smplx"):
            s = by.get(student + suffix)
            if s is None:
                continue
            r = {"latency": s["latency_ms"]["total"] / m["latency_ms"]["total"],
                 "params": s["params_m"]["total"] / m["params_m"]["total"]}
            if s.get("gflops") and m.get("gflops"):
                r["gflops"] = s["gflops"]["total"] / m["gflops"]["total"]
                r["network_latency"] = _network_ms(s) / _network_ms(m)
            ms, mt = s.get("memory") or {}, m.get("memory") or {}
            if ms.get("forward_peak_mb") and mt.get("forward_peak_mb"):
                r["forward_memory"] = ms["forward_peak_mb"] / mt["forward_peak_mb"]
            ratios[f"{student}/teacher{suffix}"] = r
    for m in models:
        if m["key"].startswith("student_plain"):
            s = by.get("student" + m["key"][len("student_plain"):])
            if s:
                ratios[f"torch_rewrites_speedup{m['key'][len('student_plain'):]}"] = {"latency": m["latency_ms"]["total"] / s["latency_ms"]["total"]}
        if m["backend"] == "onnxruntime":
            name, suffix = m["key"].split("@", 1)  # student_onnx or student_onnx_int8
            suffix = "@" + suffix
            tag = "onnx" + name[len("student_onnx"):]  # onnx or onnx_int8
            s = by.get("student" + suffix)
            if s:
                ratios[f"{tag}_speedup{suffix}"] = {"latency": s["latency_ms"]["total"] / m["latency_ms"]["total"]}
            p = by.get("student_plain" + suffix)
            if p:
                ratios[f"{tag}_speedup_vs_plain{suffix}"] = {"latency": p["latency_ms"]["total"] / m["latency_ms"]["total"]}
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
    lines = [f"{'model':<24}{'body':>6}" + "".join(f"{c:>12}" for c in cols)]
    for m in result["models"]:
        lat = m["latency_ms"]
        vals = [f"{m['params_m']['total']:.2f}", f"{m['gflops']['total']:.1f}" if m.get("gflops") else "-"]
        vals += [f"{lat[s]:.1f}" if s in lat else "-" for s in STAGES]
        mem = m.get("memory") or {}
        vals += [f"{lat['total']:.1f}"] + [f"{mem[k]:.0f}" if mem.get(k) is not None else "-" for k in ("model_mb", "forward_peak_mb")]
        lines.append(f"{m['key']:<24}{m['body_model']:>6}" + "".join(f"{v:>12}" for v in vals))
    s = result["settings"]
    lines.append(f"({s['persons']} persons per forward, {s['image']} image, device {s['device']}, {s['threads']} threads, "
                 f"median of {s['repeats']} after {s['warmup']} warm-up)")
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
    head = ["model @ size", "body", "params (M)", "GFLOPs", *STAGES, "total (ms)", "model MB", "forward MB"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in result["models"]:
        lat, mem = m["latency_ms"], m.get("memory") or {}
        cells = [m["key"], m["body_model"], f"{m['params_m']['total']:.2f}", f"{m['gflops']['total']:.1f}" if m.get("gflops") else "-"]
        cells += [f"{lat[s]:.1f}" if s in lat else "-" for s in STAGES]
        cells += [f"**{lat['total']:.1f}**"] + [f"{mem[k]:.0f}" if mem.get(k) is not None else "-" for k in ("model_mb", "forward_peak_mb")]
        rows.append("| " + " | ".join(cells) + " |")
    lines = rows + ["", "| ratio | value |", "|---|---|"]
    for k, r in result["ratios"].items():
        lines.append(f"| {k} | " + ", ".join(f"{n} {v:.3f}" for n, v in r.items() if v is not None) + " |")
    node = result.get("node")
    if node:
        lines += ["", "| node latency | ms | x Predictor |", "|---|---|---|",
                  f"| Predictor.predict() | {node['predictor_ms']:.1f} | 1.000 |",
                  f"| node: image published -> HumanMeshArray received | {node['node_end_to_end_ms']:.1f} | {node['ratio_end_to_end']:.3f} |",
                  f"| node: inside (receive -> publish) | {node['node_internal_ms']:.1f} | {node['ratio_internal']:.3f} |"]
    return "\n".join(lines)
