"""Run int8 ONNX graphs on one input and save their outputs (used by tests/test_int8_avx2.py).

Started twice by the test: natively, and under ``qemu-x86_64 -cpu Haswell``, where onnxruntime's
CPU detection sees AVX2 without AVX-512 or VNNI and dispatches its AVX2 integer kernels.
Usage: python int8_kernel_run.py INPUT.npy OUT.npz GRAPH.onnx [GRAPH.onnx ...]
"""
import sys

import numpy as np
import onnxruntime as ort


def main(argv: list[str]) -> int:
    x = np.load(argv[0])
    features = np.core._multiarray_umath.__cpu_features__
    outputs = {"avx512f": np.array(bool(features.get("AVX512F"))), "avx2": np.array(bool(features.get("AVX2")))}
    for i, path in enumerate(argv[2:]):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        session = ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])
        outputs[f"g{i}"] = session.run(None, {session.get_inputs()[0].name: x})[0]
    np.savez(argv[1], **outputs)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
