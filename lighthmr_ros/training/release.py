"""Turn a training run's ``model.pt`` into a compact release checkpoint (fp16 weights).

    python -m lighthmr_ros.training.release runs/synthetic_anny/model.pt \
        lighthmr_ros/assets/lighthmr_default.pt --metrics heldout_metrics.json --nms-kernel 1 --nms-radius 0.5

The release keeps the run's provenance (config, steps, data) and adds the held-out metrics, so
``Predictor`` users can see what the weights were trained on and how well they did. Weights are
stored in fp16 (half the size); they are cast back to the model's precision when loaded.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lighthmr_ros.errors import CheckpointError


def release_checkpoint(
    source: str | Path,
    target: str | Path,
    metrics: dict | None = None,
    note: str = "",
    detection: dict | None = None,
) -> Path:
    """``detection``: peak-search settings stored in the model config (``nms_kernel``, ``nms_radius``),
    chosen after training on validation data; they change which peaks are decoded, not the weights."""
    import dataclasses

    from lighthmr_ros.model.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint

    payload = read_checkpoint(source)
    model = load_checkpoint(source, device="cpu")
    provenance = dict(payload.get("provenance") or {})
    provenance["released_from"] = Path(source).name
    if detection:
        model.config = dataclasses.replace(model.config, **detection)
        provenance["detection_settings"] = detection
    if note:
        provenance["note"] = note
    extra = dict(payload.get("extra") or {})
    if metrics:
        extra["heldout_metrics"] = metrics
    return save_checkpoint(target, model, provenance, extra=extra, half=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="a lighthmr checkpoint (a run's model.pt)")
    parser.add_argument("target", help="where to write the fp16 release")
    parser.add_argument("--metrics", help="JSON written by `lighthmr evaluate` on held-out data")
    parser.add_argument("--note", default="", help="free text stored in the provenance")
    parser.add_argument(
        "--nms-kernel", type=int, help="default max-pool NMS window (cells) stored in the config"
    )
    parser.add_argument(
        "--nms-radius", type=float, help="duplicate suppression radius (cells) stored in the config"
    )
    args = parser.parse_args(argv)
    metrics = None
    if args.metrics:
        try:
            metrics = json.loads(Path(args.metrics).read_text())
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"Could not read the metrics file {args.metrics}: {exc}.") from exc
    detection = {
        k: v for k, v in (("nms_kernel", args.nms_kernel), ("nms_radius", args.nms_radius)) if v is not None
    }
    out = release_checkpoint(args.source, args.target, metrics, args.note, detection)
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
