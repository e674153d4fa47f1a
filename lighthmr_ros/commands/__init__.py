"""Sub-commands of the ``lighthmr`` command line (see lighthmr_ros.cli)."""

from __future__ import annotations

from lighthmr_ros.device import PRECISION_CHOICES

# The Predictor keyword arguments that add_model_arguments defines, under the same names.
MODEL_ARGUMENTS = (
    "checkpoint",
    "config",
    "body_model",
    "image_size",
    "smplx_model_dir",
    "device",
    "precision",
    "backend",
    "onnx_dir",
)


def add_model_arguments(parser) -> None:
    """Which network runs and how, defined once for predict, bag and serve; ``parser`` may be an
    argument group. They map one to one onto the Predictor's arguments (see model_arguments)."""
    parser.add_argument(
        "--checkpoint",
        help="lighthmr or official Multi-HMR checkpoint file, or the name of "
        "one fetched with `lighthmr download` (e.g. multiHMR_672_L_anny); default: the bundled model",
    )
    parser.add_argument("--config", help="model name to run untrained when no checkpoint is given")
    parser.add_argument("--body-model", choices=("anny", "smplx"), help="body model of an untrained student")
    parser.add_argument(
        "--image-size", type=int, help="network input side of an untrained model (checkpoints keep theirs)"
    )
    parser.add_argument(
        "--smplx-model-dir", help="folder with SMPLX_NEUTRAL.npz (SMPL-X models, Multi-HMR checkpoints)"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    parser.add_argument(
        "--precision",
        choices=PRECISION_CHOICES,
        default="fp32",
        help="fp32 (default); auto (bf16 where the CPU multiplies bf16 natively, fp16 on CUDA, "
        "else fp32); fp16/bf16 (torch autocast); int8 (onnxruntime backend)",
    )
    parser.add_argument(
        "--backend",
        choices=("torch", "onnxruntime"),
        default="torch",
        help="torch, or onnxruntime (CPU; exports the network at start-up unless --onnx-dir)",
    )
    parser.add_argument(
        "--onnx-dir", default=None, help="a `lighthmr export --onnx` folder for the onnxruntime backend"
    )


def model_arguments(args) -> dict:
    """The Predictor keyword arguments parsed from add_model_arguments' options."""
    return {name: getattr(args, name) for name in MODEL_ARGUMENTS}
