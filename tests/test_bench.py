"""`lighthmr bench`: a tiny side-by-side run writes the table and JSON with the expected keys.

No timed asserts: latencies depend on the machine; only structure and size facts are checked.
"""

from __future__ import annotations

import json
import os

import pytest

from lighthmr_ros.benchmark import STAGES


@pytest.fixture(scope="module")
def tiny_bench(tmp_path_factory):
    """One CLI run: student (Anny), student (synthetic SMPL-X) and teacher at 224 px, 2 persons."""
    import contextlib
    import io

    from lighthmr_ros.cli import main

    out = tmp_path_factory.mktemp("bench") / "bench.json"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(
            [
                "bench",
                "--sizes",
                "224",
                "--repeats",
                "2",
                "--warmup",
                "0",
                "--persons",
                "2",
                "--threads",
                "1",
                "--no-memory",
                "--json",
                str(out),
            ]
        )
    assert code == 0
    return json.loads(out.read_text()), buf.getvalue()


@pytest.mark.slow
def test_bench_json_has_every_model_stage_and_ratio(tiny_bench):
    result, _ = tiny_bench
    assert set(result) >= {"machine", "settings", "models", "ratios"}
    assert result["settings"]["persons"] == 2 and result["settings"]["threads"] == 1
    assert result["machine"]["torch_threads"] == 1
    models = {m["key"]: m for m in result["models"]}
    assert set(models) == {"student@224", "student_smplx@224", "teacher@224"}
    # each model in a fresh process of its own, every row with the CPU capability it ran on
    pids = {m["pid"] for m in models.values()}
    assert len(pids) == 3 and os.getpid() not in pids
    assert all(m["cpu"] == result["machine"]["cpu_capability"] for m in models.values())
    for m in models.values():
        lat = m["latency_ms"]
        assert set(lat) == set(STAGES) | {"total"}
        assert all(v >= 0 for v in lat.values())
        # Stages are consecutive intervals of one predict(): they add up to the total.
        assert sum(lat[s] for s in STAGES) == pytest.approx(lat["total"], rel=1e-6)
        assert m["gflops"]["total"] >= m["gflops"]["encoder"] > 0
        assert m["image_size"] == 224 and m["precision"] == "fp32" and m["backend"] == "torch"
    assert models["student@224"]["body_model"] == "anny"
    assert models["teacher@224"]["body_model"] == models["student_smplx@224"]["body_model"] == "smplx"
    # Size facts of the architectures (not timings): the student is the smaller network.
    assert models["student@224"]["params_m"]["total"] <= 14.5
    assert models["teacher@224"]["params_m"]["total"] > 2 * models["student_smplx@224"]["params_m"]["total"]
    assert models["teacher@224"]["gflops"]["encoder"] > models["student@224"]["gflops"]["encoder"]
    ratio = result["ratios"]["student/teacher@224"]
    t, s = models["teacher@224"], models["student@224"]
    assert ratio["latency"] == pytest.approx(s["latency_ms"]["total"] / t["latency_ms"]["total"])
    assert ratio["gflops"] == pytest.approx(s["gflops"]["total"] / t["gflops"]["total"])
    assert "student_smplx/teacher@224" in result["ratios"]


@pytest.mark.slow
def test_bench_prints_table_and_ratios(tiny_bench):
    _, printed = tiny_bench
    for word in ("student@224", "teacher@224", "encoder", "decoder", "ratios:", "synthetic SMPL-X"):
        assert word in printed


@pytest.mark.slow
def test_memory_is_measured_per_model_in_a_fresh_process():
    from lighthmr_ros.benchmark import BenchOptions, run_bench

    result = run_bench(
        BenchOptions(
            sizes=(224,),
            repeats=1,
            warmup=1,
            persons=1,
            threads=1,
            include_teacher=False,
            include_student_smplx=False,
            memory=True,
        )
    )
    mem = result["models"][0]["memory"]
    assert mem["model_mb"] > 10  # TinyViT + HPH weights alone are about 55 MB in fp32
    assert mem["forward_peak_mb"] >= 0


def test_bench_rejects_sizes_the_models_cannot_take(capsys):
    from lighthmr_ros.cli import main

    assert main(["bench", "--sizes", "450"]) == 2
    assert "multiples of 32" in capsys.readouterr().err


def test_ratios_and_table_from_results():
    from lighthmr_ros.benchmark import compute_ratios, format_table

    def model(key, total, gflops, params, backend="torch"):
        lat = {s: total / len(STAGES) for s in STAGES} | {"total": total}
        return {
            "key": key,
            "body_model": "smplx",
            "backend": backend,
            "latency_ms": lat,
            "params_m": {"total": params},
            "gflops": {"total": gflops} if backend == "torch" else None,
            "memory": {"model_mb": 50.0, "forward_peak_mb": 20.0},
        }

    models = [
        model("student@448", 100.0, 5.0, 14.0),
        model("teacher@448", 500.0, 40.0, 31.0),
        model("student_onnx@448", 50.0, 0, 14.0, backend="onnxruntime"),
    ]
    ratios = compute_ratios(models)
    assert ratios["student/teacher@448"]["latency"] == pytest.approx(0.2)
    assert ratios["student/teacher@448"]["gflops"] == pytest.approx(0.125)
    assert ratios["onnx_speedup@448"]["latency"] == pytest.approx(2.0)
    settings = {
        "persons": 4,
        "image": "640x480 RGB",
        "device": "cpu",
        "threads": 2,
        "repeats": 5,
        "warmup": 2,
        "notes": [],
    }
    table = format_table({"models": models, "settings": settings, "ratios": ratios})
    assert "student_onnx@448" in table and "onnx_speedup@448" in table


def test_flop_count_includes_cpu_attention():
    """A ViT block's FLOPs by hand: linear layers 24 N D^2 plus attention 4 N^2 D (CPU flash kernel included)."""
    import timm
    import torch

    from lighthmr_ros.benchmark import flop_counter

    block = timm.models.vision_transformer.Block(dim=64, num_heads=4).eval()
    assert block.attn.fused_attn  # the path that calls F.scaled_dot_product_attention
    n, d = 100, 64
    counter = flop_counter()
    with torch.inference_mode(), counter:
        block(torch.randn(1, n, d))
    assert counter.get_total_flops() == 24 * n * d * d + 4 * n * n * d


def test_bf16_rows_pair_student_and_teacher():
    """--bf16 adds student, SMPL-X student and teacher rows under bf16 (no plain or onnx rows) and their ratios."""
    from lighthmr_ros.benchmark import compute_ratios, entry_specs

    specs = entry_specs([672], True, True, True, ["fp32", "bf16"], None, plain=True)
    keys = [s["key"] for s in specs]
    assert {"student@672/bf16", "student_smplx@672/bf16", "teacher@672/bf16"} <= set(keys)
    assert not any(k.endswith("/bf16") and ("plain" in k or "onnx" in k) for k in keys)
    assert all(s["precision"] == "bf16" for s in specs if s["key"].endswith("/bf16"))

    def row(key, total):
        return {"key": key, "backend": "torch", "latency_ms": {"total": total}, "params_m": {"total": 1.0}}

    ratios = compute_ratios([row("student@672/bf16", 20.0), row("teacher@672/bf16", 100.0)])
    assert ratios["student/teacher@672/bf16"]["latency"] == pytest.approx(0.2)


@pytest.mark.slow
def test_anny_teacher_rows_have_stages_and_flops():
    """--anny-teacher s: the Multi-HMR-Anny teacher (its own FOV, full-body Anny) measured like the others."""
    from lighthmr_ros.benchmark import BenchOptions, run_bench

    result = run_bench(BenchOptions(sizes=(224,), repeats=1, warmup=0, persons=2, threads=1, include_teacher=False,
                                    include_student_smplx=False, memory=False, anny_teachers=("s",)))
    row = {m["key"]: m for m in result["models"]}["anny_teacher_s@224"]
    assert row["model"] == "multihmr_anny_vits14" and row["body_model"] == "anny_fullbody"
    lat = row["latency_ms"]
    assert set(lat) == set(STAGES) | {"total"} and all(v >= 0 for v in lat.values())
    assert sum(lat[s] for s in STAGES) == pytest.approx(lat["total"], rel=1e-6)
    flops = row["gflops"]
    assert flops["total"] >= flops["encoder"] > flops["decoder"] > 0
