"""``lighthmr export --onnx OUT``: the network as ONNX graphs (encoder, decoder) for onnxruntime."""

from __future__ import annotations

import argparse
import sys


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--onnx", required=True, metavar="OUT", help="output folder: encoder.onnx, decoder.onnx and lighthmr_onnx.json"
    )
    parser.add_argument(
        "--checkpoint", help="checkpoint to export (default: the bundled one, else an untrained student)"
    )
    parser.add_argument("--config", help="model name to export untrained when no checkpoint is given")
    parser.add_argument("--image-size", type=int, help="network input side (untrained models; checkpoints keep theirs)")
    parser.add_argument("--body-model", choices=["anny", "smplx"], help="body model of an untrained student")
    parser.add_argument("--smplx-model-dir", help="folder with SMPLX_NEUTRAL.npz (SMPL-X models)")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    parser.add_argument(
        "--int8",
        action="store_true",
        help="also write int8 graphs (encoder.int8.onnx, decoder.int8.onnx) for --precision int8",
    )
    parser.add_argument(
        "--no-verify", action="store_true", help="skip comparing onnxruntime with torch on a test image"
    )


def run(args: argparse.Namespace) -> int:
    from lighthmr_ros.inference import Predictor
    from lighthmr_ros.onnx_export import export_onnx

    pred = Predictor(
        checkpoint=args.checkpoint,
        config=args.config,
        device="cpu",
        body_model=args.body_model,
        smplx_model_dir=args.smplx_model_dir,
        image_size=args.image_size,
    )
    provenance = {"checkpoint": str(args.checkpoint) if args.checkpoint else None, "config": pred.model.config.name}
    out = export_onnx(pred.model, args.onnx, opset=args.opset, provenance=provenance, int8=args.int8)
    print(
        f"exported {pred.model.config.name} ({pred.image_size} px, body model {pred.body_model_name}) to {out}"
        + (" with int8 graphs" if args.int8 else "")
    )
    if args.int8:
        from lighthmr_ros.onnx_export import INT8_FILES, INT16_MAX, worst_pair_sum

        worst = max(worst_pair_sum(out / f) for f in INT8_FILES.values())
        print(
            f"int8 graphs: 7-bit weights, largest u8 x s8 pair sum {worst} <= {INT16_MAX} "
            "(cannot saturate in the AVX2 / AVX-512 / VNNI kernels alike)"
        )
    if args.no_verify:
        return 0
    from lighthmr_ros.onnx_backend import TOLERANCE, compare_backends

    diffs = compare_backends(pred.model, out)
    print("onnxruntime vs torch, max abs difference: " + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()))
    bad = [k for k, v in diffs.items() if v > TOLERANCE[k]]
    if bad:
        print(
            f"error: onnxruntime differs from torch beyond tolerance in {', '.join(bad)} {TOLERANCE}", file=sys.stderr
        )
        return 1
    if args.int8:  # approximate by design: reported, not checked against the fp32 tolerance
        diffs = compare_backends(pred.model, out, precision="int8")
        if all(v < float("inf") for v in diffs.values()):
            print("int8 vs torch fp32, max abs difference: " + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()))
        else:  # a flat score map (untrained weights) lets int8 rounding reorder its peaks
            print(
                "int8 vs torch fp32: other token cells were picked on the random test image (expected with "
                "untrained weights; measure a trained model with `lighthmr evaluate --precision int8`)"
            )
    return 0
