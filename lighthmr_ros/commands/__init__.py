"""Sub-commands of the ``lighthmr`` command line (see lighthmr_ros.cli)."""
from __future__ import annotations


def add_runtime_arguments(parser) -> None:
    """--precision, --backend and --onnx-dir (how the network runs), shared by predict, bag and serve;
    ``parser`` may be an argument group. They map one to one onto the Predictor's arguments."""
    parser.add_argument("--precision", choices=("fp32", "fp16", "bf16", "int8"), default="fp32",
                        help="fp32 (default); fp16/bf16 (torch, GPU); int8 (onnxruntime backend)")
    parser.add_argument("--backend", choices=("torch", "onnxruntime"), default="torch",
                        help="torch, or onnxruntime (CPU; exports the network at start-up unless --onnx-dir)")
    parser.add_argument("--onnx-dir", default=None, help="a `lighthmr export --onnx` folder for the onnxruntime backend")
