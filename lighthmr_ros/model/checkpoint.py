"""Checkpoint files: this project's self-describing format and official Multi-HMR files.

Ours: a dict of plain types -- ``format``, ``version``, ``config`` (ModelConfig as a dict),
``body_model``, ``provenance``, ``extra``, ``dtype`` ("fp32" | "fp16") and ``state_dict``
(learned weights only: body-model tensors come from the body model's own files, so licensed
SMPL-X data never ends up in a checkpoint). Written atomically, read with
``torch.load(weights_only=True)``.

Official Multi-HMR: ``{'model_state_dict': ..., 'args': argparse.Namespace(...)}``. Read with
``weights_only=True`` and an allowlist admitting argparse.Namespace only; nothing else is ever
unpickled. The architecture is read from the weights themselves (embedding width, token grid,
decoder depth) and cross-checked with ``args``. Both generations load: the SMPL-X Multi-HMR
(``backbone.encoder.*`` keys) and Multi-HMR-Anny (``encoder.backbone.*``, ``dec_pos_emb``), whose
non-learned buffers are taken from the file as stored (its outputs depend on their rounding).

A checkpoint argument may also be the name of an official file (``multiHMR_672_L_anny``):
it resolves to the copy ``lighthmr download`` keeps in the cache (lighthmr_ros.download).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pickle
import re
import tempfile
import zipfile
from pathlib import Path

import torch

from lighthmr_ros.errors import CheckpointError, LightHMRError
from lighthmr_ros.model.config import ModelConfig, get_config
from lighthmr_ros.model.hmr import HMRModel

log = logging.getLogger(__name__)

FORMAT = "lighthmr_ros.checkpoint"
VERSION = 1
_DINO_BY_WIDTH = {384: "vits14", 768: "vitb14", 1024: "vitl14"}
_DINO_DEPTH = {"vits14": 12, "vitb14": 12, "vitl14": 24}


def _plain(obj):
    """JSON round trip: provenance/extra become plain types that weights_only loading accepts."""
    return json.loads(json.dumps(obj, default=str))


def save_checkpoint(
    path: str | Path, model: HMRModel, provenance: dict, extra: dict | None = None, half: bool = False
) -> Path:
    """Write ``model`` to ``path`` atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    state = {}
    for key, value in model.state_dict().items():
        if key.startswith(model.body_prefixes):
            continue
        value = value.detach().cpu()
        state[key] = value.half() if half and value.is_floating_point() else value.clone()
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "config": model.config.to_dict(),
        "body_model": model.body.spec.name,
        "provenance": _plain(provenance or {}),
        "extra": _plain(extra or {}),
        "dtype": "fp16" if half else "fp32",
        "state_dict": state,
    }
    atomic_save(payload, path)
    return path


def atomic_save(obj, path: str | Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def resolve_checkpoint(path: str | Path) -> Path:
    """A file path as given, or the cached download of an official checkpoint named ``path``."""
    from lighthmr_ros.download import resolve_name

    return resolve_name(path)


def read_checkpoint(path: str | Path) -> dict:
    """The raw dict of a checkpoint file (safe loading); CheckpointError for anything unusable."""
    path = resolve_checkpoint(path)
    if not path.is_file():
        raise CheckpointError(
            f"Checkpoint {path} does not exist; give the path of a .pt file written by lighthmr or Multi-HMR."
        )
    is_zip = zipfile.is_zipfile(path)
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if not is_zip:  # not a torch.save file at all (or a damaged legacy one)
            raise CheckpointError(
                f"Checkpoint {path} is truncated or not a PyTorch file; download or copy it again."
            ) from exc
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        what = f" (found {found.group(1)})" if found else ""
        raise CheckpointError(
            f"Checkpoint {path} holds Python objects other than tensors and argparse.Namespace{what}, "
            "which are never unpickled for safety; re-save its weights as a plain dict of tensors."
        ) from exc
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, KeyError) as exc:
        raise CheckpointError(
            f"Checkpoint {path} is truncated or not a PyTorch file ({type(exc).__name__}); "
            "download or copy it again."
        ) from exc
    if not isinstance(payload, dict):
        raise CheckpointError(
            f"Checkpoint {path} holds a {type(payload).__name__}, not a checkpoint dict; "
            "pass a lighthmr or Multi-HMR checkpoint."
        )
    return payload


# What every front end (CLI, node, web) says when a synthetic-only model runs: it finds phantom
# people in real photos and misses real ones. One sentence, pointing at the real-image teacher.
DEMO_MODEL_NOTICE = (
    "synthetic demo model: not trained on real people; for a real camera run "
    "`lighthmr download multiHMR_672_L_anny --accept-licence` and use the checkpoint "
    "multiHMR_672_L_anny"
)


def synthetic_only(info: dict | None) -> bool:
    """True when a checkpoint's provenance lists its training data and all of it is synthetic."""
    if not info or info.get("kind") != "lighthmr":
        return False
    datasets = (info.get("provenance") or {}).get("datasets") or []
    names = [d.get("dataset") if isinstance(d, dict) else d for d in datasets]
    return bool(names) and all(n == "synthetic" for n in names)


def model_notice(model: torch.nn.Module) -> str | None:
    """DEMO_MODEL_NOTICE for a model loaded from a synthetic-only checkpoint, else None."""
    return DEMO_MODEL_NOTICE if synthetic_only(getattr(model, "checkpoint_info", None)) else None


def checkpoint_notice(path: str | Path) -> str | None:
    """The same for a checkpoint file, read lazily (memory-mapped: no weights are loaded)."""
    try:
        path = resolve_checkpoint(path)
        with torch.serialization.safe_globals([argparse.Namespace]):
            payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (LightHMRError, OSError, RuntimeError, pickle.UnpicklingError, ValueError):
        return None  # unreadable files get their own error when loaded
    if not isinstance(payload, dict):
        return None
    kind = checkpoint_kind(payload)
    return (
        DEMO_MODEL_NOTICE if synthetic_only({"kind": kind, "provenance": payload.get("provenance")}) else None
    )


def planned_model_notice(checkpoint: str | Path | None, config: str | None) -> str | None:
    """The notice for the model a Predictor(checkpoint, config) would run (None: the bundled default)."""
    if checkpoint is None:
        if config:
            return None
        from lighthmr_ros.inference import DEFAULT_CHECKPOINT

        checkpoint = DEFAULT_CHECKPOINT
    return checkpoint_notice(checkpoint)


def checkpoint_kind(payload: dict) -> str:
    """ "lighthmr", "multihmr" (SMPL-X), "multihmr_anny" or "unknown"."""
    if payload.get("format") == FORMAT:
        return "lighthmr"
    if "model_state_dict" in payload:
        state = payload["model_state_dict"]
        if (
            isinstance(state, dict)
            and "dec_pos_emb" in state
            and any(k.startswith("encoder.backbone.") for k in state)
        ):
            return "multihmr_anny"
        return "multihmr"
    return "unknown"


def official_anny_config(state: dict, args: argparse.Namespace | None, path: Path | str = "") -> ModelConfig:
    """The Anny teacher config of an official Multi-HMR-Anny state_dict.

    Widths, depths, the token grid and the number of phenotype outputs come from tensor shapes;
    the split of the attention width into heads x head size is invisible in shapes and comes from
    ``args`` (xat_heads, xat_dim_head; upstream's defaults 16 x 32 when absent), as does a check of
    the settings this implementation follows (simple depth encoding, head-centred persons).
    """
    try:
        width = int(state["encoder.backbone.pos_embed"].shape[-1])
        cells = int(state["dec_pos_emb"].shape[0])
        dim = int(state["dec_to_token.weight"].shape[0])
        num_betas = int(state["mlp_shape.2.weight"].shape[0])
        inner = int(state["decoder.transformer.layers.0.1.fn.to_q.weight"].shape[0])
        mlp = int(state["decoder.transformer.layers.0.2.fn.net.0.weight"].shape[0])
    except KeyError as exc:
        raise CheckpointError(
            f"Checkpoint {path} lacks the Multi-HMR-Anny weight {exc.args[0]!r}; "
            "it is not a Multi-HMR-Anny checkpoint."
        ) from None
    if width not in _DINO_BY_WIDTH:
        raise CheckpointError(
            f"Checkpoint {path} has a {width}-wide backbone, not a DINOv2 ViT-S/B/L; "
            "it is not a supported Multi-HMR-Anny checkpoint."
        )
    vit = _DINO_BY_WIDTH[width]
    blocks = len({k.split(".")[3] for k in state if k.startswith("encoder.backbone.blocks.")})
    if blocks != _DINO_DEPTH[vit]:
        raise CheckpointError(
            f"Checkpoint {path} has a {width}-wide backbone with {blocks} blocks; "
            f"DINOv2 {vit} has {_DINO_DEPTH[vit]}, so the file is damaged or not supported."
        )
    grid = int(round(cells**0.5))
    if grid * grid != cells:
        raise CheckpointError(
            f"Checkpoint {path} has a position table of {cells} cells, not a square grid; "
            "the file is damaged."
        )
    backbone = getattr(args, "backbone", None)
    if backbone and not str(backbone).endswith(vit):
        raise CheckpointError(
            f"Checkpoint {path} says backbone {backbone!r} but holds {vit} weights; the file is inconsistent."
        )
    img_size = getattr(args, "img_size", None)
    if isinstance(img_size, (list, tuple)):
        img_size = img_size[0]
    if img_size is not None and int(img_size) != grid * 14:
        raise CheckpointError(
            f"Checkpoint {path} says img_size {img_size} but its position table is for "
            f"{grid * 14} px; the file is inconsistent."
        )
    depth_encoding = getattr(args, "simple_depth_encoding", 1)
    if depth_encoding != 1:
        raise CheckpointError(
            f"Checkpoint {path} uses simple_depth_encoding={depth_encoding}; "
            "only upstream's simple depth encoding (1) is implemented."
        )
    centre = getattr(args, "person_center", "head")
    if centre != "head":
        raise CheckpointError(f"Checkpoint {path} centres persons on {centre!r}; only 'head' is implemented.")
    heads = int(getattr(args, "xat_heads", 16) or 16)
    dim_head = int(getattr(args, "xat_dim_head", 0) or inner // heads)
    if heads * dim_head != inner:
        raise CheckpointError(
            f"Checkpoint {path}: xat_heads {heads} x xat_dim_head {dim_head} does not match "
            f"its {inner}-wide attention; the file is inconsistent."
        )
    depth = len({k.split(".")[3] for k in state if k.startswith("decoder.transformer.layers.")})
    return get_config(
        f"multihmr_anny_{vit}",
        image_size=grid * 14,
        hph_dim=dim,
        hph_depth=depth,
        hph_heads=heads,
        hph_dim_head=dim_head,
        hph_mlp_dim=mlp,
        num_betas=num_betas,
    )


def official_config(state: dict, args: argparse.Namespace | None, path: Path | str = "") -> ModelConfig:
    """The teacher config of an official state_dict (read from tensor shapes, checked against args)."""
    try:
        width = int(state["backbone.encoder.pos_embed"].shape[-1])
        grid = int(state["x_attention_head.cross_queries_x"].shape[0])
        hph_dim = int(state["x_attention_head.transformer.pos_embedding"].shape[-1])
        num_betas = int(state["x_attention_head.decshape.weight"].shape[0])
    except KeyError as exc:
        raise CheckpointError(
            f"Checkpoint {path} lacks the Multi-HMR weight {exc.args[0]!r}; it is not a Multi-HMR checkpoint."
        ) from None
    if width not in _DINO_BY_WIDTH:
        raise CheckpointError(
            f"Checkpoint {path} has a {width}-wide backbone, not a DINOv2 ViT-S/B/L; "
            "it is not a supported Multi-HMR checkpoint."
        )
    depth = len(
        {k.split(".")[4] for k in state if k.startswith("x_attention_head.transformer.transformer.layers.")}
    )
    qkv = state["x_attention_head.transformer.transformer.layers.0.0.fn.to_qkv.weight"]
    mlp = state["x_attention_head.transformer.transformer.layers.0.2.fn.net.0.weight"]
    heads = int(getattr(args, "xat_num_heads", 8) or 8)
    name = f"multihmr_{_DINO_BY_WIDTH[width]}"
    backbone = getattr(args, "backbone", None)
    if backbone and not str(backbone).endswith(_DINO_BY_WIDTH[width]):
        raise CheckpointError(
            f"Checkpoint {path} says backbone {backbone!r} but holds {_DINO_BY_WIDTH[width]} weights; "
            "the file is inconsistent."
        )
    layers = tuple(dict.fromkeys(k.split(".")[1] for k in state if k.startswith("smpl_layer.")))
    preferred = f"neutral_{num_betas}"
    if preferred in layers:  # the layer with the predicted number of betas runs forward
        layers = (preferred,) + tuple(n for n in layers if n != preferred)
    cam_dim = int(state["x_attention_head.cross_queries_x"].shape[1]) - width
    bands = (cam_dim - 3) // 6
    return get_config(
        name,
        image_size=grid * 14,
        hph_dim=hph_dim,
        hph_depth=depth,
        hph_heads=heads,
        hph_dim_head=int(qkv.shape[0]) // 3 // heads,
        hph_mlp_dim=int(mlp.shape[0]),
        camera_num_bands=bands,
        camera_max_resolution=int(getattr(args, "camera_embedding_max_resolution", 64) or 64),
        num_betas=num_betas,
        smpl_layers=layers or (preferred,),
    )


def _load_weights(model: HMRModel, state: dict, path: Path | str, what: str) -> None:
    """Strict load of every learned weight; body tensors are optional (they come from the body files)."""
    own = model.state_dict()
    body = model.body_prefixes
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}
    missing = [k for k in own if k not in state and not k.startswith(body)]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in state if k in own and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} weights missing (first {missing[0]!r})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (first {unexpected[0]!r})")
        if wrong:
            parts.append(
                f"{len(wrong)} of another shape (first {wrong[0]!r}: "
                f"{tuple(state[wrong[0]].shape)} vs {tuple(own[wrong[0]].shape)})"
            )
        raise CheckpointError(
            f"Checkpoint {path} does not fit the {what} model: {', '.join(parts)}; "
            "use the config it was trained with."
        )
    model.load_state_dict(state, strict=False)


def load_checkpoint(
    path: str | Path,
    device: str | torch.device = "cpu",
    smplx_model_dir: str | Path | None = None,
    body_model: str | torch.nn.Module | None = None,
) -> HMRModel:
    """Build the model a checkpoint describes and load its weights (eval mode, on ``device``).

    Works for this project's checkpoints, official Multi-HMR ones (which need the user's SMPL-X
    files in ``smplx_model_dir``) and official Multi-HMR-Anny ones (nothing else needed); ``path``
    may name a downloaded official file (``multiHMR_672_L_anny``). ``body_model`` may replace the
    body model instance (same name) of a student or Anny-teacher checkpoint, e.g. to share one.
    """
    from lighthmr_ros.model import create_model

    path = resolve_checkpoint(path)
    payload = read_checkpoint(path)
    kind = checkpoint_kind(payload)
    if kind == "lighthmr":
        if int(payload.get("version", 0)) > VERSION:
            raise CheckpointError(
                f"Checkpoint {path} has format version {payload.get('version')}; "
                "upgrade lighthmr_ros to read it."
            )
        try:
            config = ModelConfig.from_dict(payload["config"])
        except (LightHMRError, TypeError, KeyError) as exc:
            raise CheckpointError(
                f"Checkpoint {path} has an unreadable model config ({exc}); "
                "it was written by an incompatible lighthmr_ros."
            ) from exc
        name = payload.get("body_model", config.body_model)
        body = body_model if isinstance(body_model, torch.nn.Module) else name
        model = create_model(config, body_model=body, smplx_model_dir=smplx_model_dir)
        if model.body.spec.name != name:
            raise CheckpointError(
                f"Checkpoint {path} was trained with the {name} body model, not {model.body.spec.name}; "
                f"pass body_model={name!r}."
            )
        _load_weights(model, payload["state_dict"], path, config.name)
        info = {"kind": kind, "provenance": payload.get("provenance", {}), "extra": payload.get("extra", {})}
    elif kind == "multihmr_anny":
        state = payload["model_state_dict"]
        args = payload.get("args")
        args = args if isinstance(args, argparse.Namespace) else None
        config = official_anny_config(state, args, path)
        model = create_model(
            config, body_model=body_model if isinstance(body_model, torch.nn.Module) else None
        )
        # Upstream's demo loads these files with strict=False: tolerate extra entries (never missing ones).
        own = model.state_dict()
        extra = sorted(k for k in state if k not in own)
        if extra:
            log.warning("Checkpoint %s: ignoring %d entries this architecture does not use (first %r)",
                        path, len(extra), extra[0])
            state = {k: v for k, v in state.items() if k in own}
        _load_weights(model, state, path, config.name)
        info = {
            "kind": kind,
            "provenance": {
                "source": "official Multi-HMR-Anny checkpoint",
                "file": Path(path).name,
                "args": _plain(vars(args)) if args else {},
            },
            "extra": {},
        }
    elif kind == "multihmr":
        state = payload["model_state_dict"]
        args = payload.get("args")
        if not isinstance(state, dict):
            raise CheckpointError(
                f"Checkpoint {path} has no usable model_state_dict; it is not a Multi-HMR checkpoint."
            )
        config = official_config(state, args if isinstance(args, argparse.Namespace) else None, path)
        model = create_model(config, smplx_model_dir=smplx_model_dir)
        _load_weights(model, state, path, config.name)
        info = {
            "kind": kind,
            "provenance": {
                "source": "official Multi-HMR checkpoint",
                "file": Path(path).name,
                "args": _plain(vars(args)) if isinstance(args, argparse.Namespace) else {},
            },
            "extra": {},
        }
    else:
        raise CheckpointError(
            f"{path} is a PyTorch file but neither a lighthmr nor a Multi-HMR checkpoint "
            "(no 'format' or 'model_state_dict' entry)."
        )
    model.checkpoint_info = {"path": str(path), **info}
    return model.to(device).eval()
