"""The default model's int8 encoder on onnxruntime's real AVX2 kernels, on any x86 host.

``qemu-x86_64 -cpu Haswell`` (Debian's qemu-user, installed by scripts/setup_env.sh) runs the same
Python and onnxruntime with a CPU that reports AVX2 but no AVX-512 and no VNNI, so onnxruntime
dispatches its AVX2 u8 x s8 kernels (vpmaddubsw, saturating int16 pair sums) even on an AVX-512
host. The 7-bit-weight graphs the export writes must be as close to fp32 there as natively (no int16
pair sum can saturate); the 8-bit-weight graphs of the old export are run beside them to show that
this run really hits the saturating kernels (several times the error on AVX2).
On an AVX2-only host the native run already is AVX2 and the same comparison holds.
"""
from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow
RUNNER = Path(__file__).with_name("int8_kernel_run.py")


def _run(cmd: list[str], out: Path) -> dict:
    env = {**os.environ, "_ROS_WHEELS_BOOTSTRAP_COMPLETE": "1"}  # no re-exec of python (it would leave qemu)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return dict(np.load(out))


@pytest.mark.skipif(platform.machine() != "x86_64", reason="x86-64 instruction sets only")
def test_int8_encoder_gives_the_same_tokens_on_avx2_kernels_as_natively(tmp_path):
    import cv2
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from skimage.data import astronaut

    from lighthmr_ros.inference import DEFAULT_CHECKPOINT, Predictor
    from lighthmr_ros.onnx_export import ENCODER_FILE, INT8_FILES, export_onnx

    qemu = shutil.which("qemu-x86_64")
    assert qemu, "qemu-x86_64 is missing: scripts/setup_env.sh installs Debian's qemu-user for this test"
    pred = Predictor(DEFAULT_CHECKPOINT, device="cpu")
    out = export_onnx(pred.model, tmp_path / "onnx", int8=True)
    old = tmp_path / "encoder.s8.onnx"  # the export before the fix: full 8-bit weights
    quantize_dynamic(str(out / ENCODER_FILE), str(old), op_types_to_quantize=["MatMul", "Gemm"], per_channel=True,
                     weight_type=QuantType.QInt8)
    image = cv2.resize(astronaut(), (640, 480))
    batch, _, _, _ = pred.prepare([image], [None])
    np.save(tmp_path / "x.npy", batch.numpy().astype(np.float32))
    graphs = [str(out / INT8_FILES[ENCODER_FILE]), str(old), str(out / ENCODER_FILE)]
    args = [str(RUNNER), str(tmp_path / "x.npy")]
    native = _run([sys.executable, args[0], args[1], str(tmp_path / "n.npz"), *graphs], tmp_path / "n.npz")
    avx2 = _run([qemu, "-cpu", "Haswell", sys.executable, args[0], args[1], str(tmp_path / "a.npz"), *graphs],
                tmp_path / "a.npz")
    assert bool(avx2["avx2"]) and not bool(avx2["avx512f"]), "the emulated CPU must be AVX2-only"

    def rel(a, b):
        return float(np.abs(a - b).max() / np.abs(b).max())

    fp32 = native["g2"]
    assert rel(avx2["g2"], fp32) < 1e-4  # fp32 graph: the same on both, the emulation is faithful
    err = {(where, graph): rel(run[key], fp32) for where, run in (("native", native), ("avx2", avx2))
           for graph, key in (("s7", "g0"), ("s8", "g1"))}
    print("max |int8 - fp32| / max |fp32| of the tokens: " + ", ".join(f"{w} {g} {v:.2e}" for (w, g), v in err.items()))
    # Not bit-equal: the fp32 parts (convolutions, norms) round differently on AVX2, which moves a few
    # activations across a u8 step; the int8 error stays that of quantisation, as on the native kernels.
    assert err["avx2", "s7"] <= 1.5 * err["native", "s7"] + 1e-3
    assert err["avx2", "s7"] < 0.03
    if not bool(native["avx512f"]):  # an AVX2-only host: both runs are AVX2 and saturate alike
        return
    # the 8-bit graphs of the old export saturate on AVX2 only: this run really hit the AVX2 kernels
    assert err["avx2", "s8"] > 3 * err["native", "s8"] and err["avx2", "s8"] > 2 * err["avx2", "s7"]
