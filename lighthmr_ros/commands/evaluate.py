"""``lighthmr evaluate``: MPJPE, PA-MPJPE, PVE, PA-PVE (mm) and detection P/R/F1 on a data set."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="lighthmr or official Multi-HMR checkpoint")
    parser.add_argument("--dataset", required=True, choices=["3dpw", "agora", "bedlam", "synthetic"])
    parser.add_argument("--root", required=True, help="data set folder in its release layout")
    parser.add_argument(
        "--split", help="split (default: 3dpw test, agora validation, bedlam validation, synthetic all)"
    )
    parser.add_argument(
        "--subsample", type=int, default=1, help="every N-th image (Multi-HMR: 3DPW 20, BEDLAM 25)"
    )
    parser.add_argument("--limit", type=int, help="stop after this many images")
    parser.add_argument(
        "--smplx-model-dir", help="folder with SMPLX_NEUTRAL.npz (SMPL-X checkpoints and GT meshes)"
    )
    parser.add_argument(
        "--smpl-dir", help="3DPW standard protocol: folder with the gendered SMPL .pkl models"
    )
    parser.add_argument(
        "--h36m-regressor", help="3DPW standard protocol: SPIN's J_regressor_h36m.npy (17 x 6890)"
    )
    parser.add_argument(
        "--smplx2smpl", help="3DPW standard protocol: Multi-HMR's smplx2smpl.pkl (6890 x 10475)"
    )
    parser.add_argument(
        "--anny2smplx",
        help="Anny checkpoints (students, the Multi-HMR-Anny teacher) on 3DPW/BEDLAM/AGORA: Anny's "
        "anny2smplx.pth correspondence (non-commercial data; default: anny's cache, "
        "~/.cache/anny/noncommercial/anny2smplx.pth, when present); needs --smplx-model-dir",
    )
    parser.add_argument(
        "--det-threshold",
        type=float,
        help="detection threshold (default: 0.2 under the 3DPW standard protocol, else 0.5)",
    )
    parser.add_argument("--max-humans", type=int, default=20, help="at most this many detections per image")
    parser.add_argument("--image-size", type=int, help="network input size (default: the checkpoint's)")
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--backend",
        choices=["torch", "onnxruntime"],
        default="torch",
        help="run the network in torch (default) or onnxruntime (CPU)",
    )
    parser.add_argument(
        "--precision",
        choices=["auto", "fp32", "fp16", "bf16", "int8"],
        default="fp32",
        help="fp32 (default); auto (the Predictor's rule: bf16 on CPUs with native bf16, fp16 on "
        "CUDA, else fp32); torch: fp16 / bf16 autocast; onnxruntime: its int8 graphs",
    )
    parser.add_argument("--onnx-dir", help="a `lighthmr export --onnx` folder (default: export at start-up)")
    parser.add_argument(
        "--output", default="metrics.json", help="JSON file for the results (default metrics.json)"
    )


class AutocastRunner:
    """The model under torch autocast (fp16 / bf16), the way the Predictor runs those precisions."""

    def __init__(self, model, dtype):
        self.model, self.dtype = model, dtype

    def __call__(self, images, K, **kwargs):
        import torch

        with torch.autocast(device_type=images.device.type, dtype=self.dtype):
            return self.model(images, K, **kwargs)

    def close(self) -> None:
        pass


def _threedpw_protocol(args: argparse.Namespace):
    """3DPW's standard protocol when its three files are given (all or none)."""
    from lighthmr_ros.errors import ConfigError

    files = {
        "--smpl-dir": args.smpl_dir,
        "--h36m-regressor": args.h36m_regressor,
        "--smplx2smpl": args.smplx2smpl,
    }
    given = [k for k, v in files.items() if v]
    if not given:
        return None
    if args.dataset != "3dpw":
        raise ConfigError(
            f"{', '.join(given)} belong to the 3DPW protocol; drop them for --dataset {args.dataset}"
        )
    missing = [k for k, v in files.items() if not v]
    if missing:
        raise ConfigError(
            f"the 3DPW standard protocol needs {', '.join(missing)} as well as {', '.join(given)}"
        )
    from lighthmr_ros.training.pw3d_protocol import ThreeDPWProtocol

    return ThreeDPWProtocol.from_files(args.smpl_dir, args.h36m_regressor, args.smplx2smpl)


def _anny_to_smplx(args: argparse.Namespace, model, device: str):
    """The SMPL-X view of an Anny checkpoint on an SMPL/SMPL-X data set (None where it is not needed)."""
    from lighthmr_ros.body.anny2smplx import AnnyToSMPLX, default_anny2smplx_path
    from lighthmr_ros.errors import ConfigError

    anny_model = hasattr(model.body, "anny")
    if args.anny2smplx and (args.dataset == "synthetic" or not anny_model):
        raise ConfigError(
            "--anny2smplx measures an Anny checkpoint on SMPL/SMPL-X annotations; drop it for "
            f"{'synthetic Anny scenes' if args.dataset == 'synthetic' else 'an SMPL-X checkpoint'}"
        )
    if args.dataset == "synthetic" or not anny_model:
        return None
    path = args.anny2smplx or default_anny2smplx_path()
    if path is None:
        raise ConfigError(
            f"this checkpoint predicts Anny meshes and {args.dataset} is annotated in SMPL/SMPL-X: give "
            "--anny2smplx with Anny's anny2smplx.pth (non-commercial data; "
            "python -c 'import anny.paths as p; p.get_anny2smplx_data_path()' downloads it) and --smplx-model-dir"
        )
    from lighthmr_ros.body.smplx_model import SMPLXBody

    smplx = SMPLXBody(args.smplx_model_dir)
    mapping = AnnyToSMPLX.load(path, model.body, smplx)
    print(f"Anny meshes measured in SMPL-X terms through {path}")
    return mapping


def run(args: argparse.Namespace) -> int:
    from lighthmr_ros.device import resolve_device
    from lighthmr_ros.errors import ConfigError
    from lighthmr_ros.training.datasets import create_dataset
    from lighthmr_ros.training.evaluate import evaluate_model, format_table, load_model_for_eval

    if args.backend == "torch" and args.precision == "int8":
        raise ConfigError("--precision int8 needs --backend onnxruntime")
    if args.backend == "onnxruntime" and args.precision in ("fp16", "bf16"):
        raise ConfigError(
            f"--precision {args.precision} runs in the torch backend; onnxruntime runs fp32 or int8"
        )
    device = "cpu" if args.backend == "onnxruntime" else str(resolve_device(args.device))  # onnx graphs: CPU
    protocol = _threedpw_protocol(args)
    if args.precision == "auto":  # the Predictor's rule (lighthmr_ros.device); onnxruntime runs fp32 or int8
        from lighthmr_ros.device import resolve_precision

        args.precision = "fp32" if args.backend == "onnxruntime" else resolve_precision("auto", device).name
        print(f"precision auto -> {args.precision}")
    split = (
        args.split
        or {"3dpw": "test", "agora": "validation", "bedlam": "validation", "synthetic": "all"}[args.dataset]
    )
    reader = create_dataset(args.dataset, args.root, split=split, subsample=args.subsample)
    model = load_model_for_eval(args.checkpoint, device=device, smplx_model_dir=args.smplx_model_dir)
    anny2smplx = _anny_to_smplx(args, model, device)
    runner = None
    if args.backend == "onnxruntime":
        from lighthmr_ros.onnx_backend import OnnxHMR

        runner = OnnxHMR(model.eval(), args.onnx_dir, precision=args.precision)
    elif args.precision in ("fp16", "bf16"):
        from lighthmr_ros.inference import PRECISIONS

        runner = AutocastRunner(model.eval(), PRECISIONS[args.precision])
    try:
        summary = evaluate_model(
            model,
            reader,
            size=args.image_size,
            device=device,
            det_threshold=args.det_threshold,
            max_humans=args.max_humans,
            protocol=protocol,
            limit=args.limit,
            runner=runner,
            anny2smplx=anny2smplx,
        )
    finally:
        if runner is not None:
            runner.close()
    summary.update(
        checkpoint=str(args.checkpoint),
        split=split,
        root=str(args.root),
        backend=args.backend,
        network_precision=args.precision,
    )  # "precision" is the detection metric
    print(format_table(summary))
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2))
    print(f"wrote {out}")
    return 0
