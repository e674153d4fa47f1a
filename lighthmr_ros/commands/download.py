"""``lighthmr download NAME --accept-licence``: an official Multi-HMR checkpoint into the cache.

After it, ``--checkpoint NAME`` (and the node's ``checkpoint:=NAME``) runs that file.
``lighthmr download --list`` shows the names and which are already downloaded.
"""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", help="official checkpoint name, e.g. multiHMR_672_L_anny")
    parser.add_argument(
        "--accept-licence",
        "--accept-license",
        dest="accept_licence",
        action="store_true",
        help="accept NAVER's non-commercial licence of the file (shown before downloading)",
    )
    parser.add_argument(
        "--cache-dir", help="where checkpoints are kept (default $LIGHTHMR_CACHE_DIR or ~/.cache/lighthmr)"
    )
    parser.add_argument("--url", help="download from this address instead of NAVER's (a mirror)")
    parser.add_argument(
        "--sha256", help="expected SHA-256 of the file (default: the one recorded by an earlier download)"
    )
    parser.add_argument(
        "--force", action="store_true", help="download again even if a verified copy is cached"
    )
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="seconds without data before giving up (default 60)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--list", action="store_true", help="list the official checkpoints and the cached ones"
    )


def run(args: argparse.Namespace) -> int:
    from lighthmr_ros.download import OFFICIAL, cache_dir, download, read_record
    from lighthmr_ros.errors import DownloadError

    if args.list or not args.name:
        folder = cache_dir(args.cache_dir)
        print(f"official Multi-HMR checkpoints (cache: {folder}):")
        for entry in OFFICIAL.values():
            target = folder / entry.filename
            record = read_record(target) if target.is_file() else None
            state = (
                f"cached, SHA-256 {record['sha256'][:16]}..."
                if record
                else ("cached" if target.is_file() else "")
            )
            print(
                f"  {entry.name:<24} ViT-{entry.backbone} {entry.resolution:>4} px  "
                f"{entry.body_model:<6} {state}"
            )
        if not args.name and not args.list:
            raise DownloadError(
                "name the checkpoint to download, e.g. "
                "`lighthmr download multiHMR_672_L_anny --accept-licence`."
            )
        return 0
    result = download(
        args.name,
        accept_licence=args.accept_licence,
        cache=args.cache_dir,
        url=args.url,
        sha256=args.sha256,
        force=args.force,
        timeout=args.timeout,
        progress=not args.no_progress,
    )
    name = args.name.removesuffix(".pt")
    print(f"use it with --checkpoint {name} (ROS: checkpoint:={name}); file: {result.path}")
    return 0
