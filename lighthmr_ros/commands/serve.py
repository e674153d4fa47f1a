"""``lighthmr serve``: the browser demo (FastAPI app, built front end at /, API docs at /docs)."""
from __future__ import annotations

import argparse
import ipaddress
import logging
import socket

from lighthmr_ros.commands import add_model_arguments, model_arguments
from lighthmr_ros.commands.predict import _fov  # degrees or "auto", as `lighthmr predict --fov`
from lighthmr_ros.errors import ConfigError
from lighthmr_ros.ros.fov_estimate import DEFAULT_SETTLE_FRAMES  # plain Python: no ROS needed

log = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: localhost only)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    add_model_arguments(parser)
    parser.add_argument("--max-upload-mb", type=float, default=20.0, help="largest upload accepted (MiB)")
    parser.add_argument("--max-megapixels", type=float, default=40.0,
                        help="largest image accepted (megapixels)")
    parser.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                        help="allow cross-origin requests from ORIGIN (repeatable; default: none)")
    parser.add_argument("--det-threshold", type=float, default=0.5, help="default detection threshold")
    parser.add_argument("--fov", type=_fov, default="auto",
                        help="default field of view across the larger image side, degrees or 'auto' (default): "
                             "the model's own estimate when it has one (Anny teacher), else 60")
    parser.add_argument("--fov-estimate-frames", type=int, default=DEFAULT_SETTLE_FRAMES, metavar="N",
                        help="the page's webcam mode with auto FOV: the median of the estimates of the first N frames "
                             f"with people, then fixed (as the ROS node's fov_estimate stable; default "
                             f"{DEFAULT_SETTLE_FRAMES})")


def _check_port(host: str, port: int) -> None:
    """Fail with one sentence, before loading the model, when the address cannot be bound."""
    if not 0 < port < 65536:
        raise ConfigError(f"--port {port} is not a TCP port; choose one in 1-65535.")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise ConfigError(
                f"Cannot listen on {host}:{port} ({exc.strerror}); choose another --port or --host."
            ) from None


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from lighthmr_ros.web.app import STATIC_DIR, WebSettings, build_predictor, create_app

    if not 0.0 <= args.det_threshold <= 1.0:
        raise ConfigError(f"--det-threshold {args.det_threshold} is outside [0, 1]; pick e.g. 0.5.")
    if args.fov != "auto" and not 10.0 <= args.fov <= 170.0:
        raise ConfigError(f"--fov {args.fov} is outside [10, 170] degrees; pick e.g. 60.")
    if not 1 <= args.fov_estimate_frames <= 1000:
        raise ConfigError(f"--fov-estimate-frames {args.fov_estimate_frames} is outside [1, 1000]; pick e.g. "
                          f"{DEFAULT_SETTLE_FRAMES}.")
    if args.max_upload_mb <= 0 or args.max_megapixels <= 0:
        raise ConfigError("--max-upload-mb and --max-megapixels must be positive.")
    _check_port(args.host, args.port)
    settings = WebSettings(
        **model_arguments(args),
        max_upload_bytes=int(args.max_upload_mb * 2**20),
        max_pixels=int(args.max_megapixels * 1e6),
        cors_origins=tuple(args.cors_origin),
        det_threshold=args.det_threshold,
        fov_deg=args.fov,
        fov_estimate_frames=args.fov_estimate_frames,
    )
    if not _is_loopback(args.host):
        log.warning("listening on %s: anyone who can reach this machine can use the demo", args.host)
    if not (STATIC_DIR / "index.html").is_file():
        log.warning("front end not built (%s missing): run scripts/build_web.sh; the API still works", STATIC_DIR)
    log.info("loading the model ...")
    predictor = build_predictor(settings)  # load before binding so a bad checkpoint fails with one line
    app = create_app(predictor, settings)
    shown = f"[{args.host}]" if ":" in args.host else args.host
    log.info("demo at http://%s:%d/ (API docs at /docs)", shown, args.port)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", access_log=False)
    return 0
