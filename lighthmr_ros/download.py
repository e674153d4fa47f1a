"""Official Multi-HMR checkpoints: names, where NAVER publishes them, and a careful downloader.

``download("multiHMR_672_L_anny", accept_licence=True)`` fetches the file into the cache folder
(``$LIGHTHMR_CACHE_DIR``, else ``$XDG_CACHE_HOME/lighthmr``, else ``~/.cache/lighthmr``):

- into ``.<file>.part`` beside the target, with a tqdm progress bar;
- an interrupted transfer resumes where it stopped (HTTP Range, guarded by If-Range on the
  server's ETag or Last-Modified so that a changed file is fetched again from the start);
- the received size must equal the announced one, and the SHA-256 must equal the expected one
  (given, or recorded by an earlier download of the same name); the first download records its
  size and hash in ``<file>.sha256.json`` and prints the hash;
- only a verified file is renamed (atomically) to ``<cache>/<name>.pt``.

The checkpoints are NAVER's, under licences that allow non-commercial use only; nothing is fetched
without ``accept_licence=True`` (``--accept-licence``). ``resolve_name`` lets every ``--checkpoint``
option take such a name instead of a path.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from lighthmr_ros.errors import CheckpointError, DownloadError

BASE_URL = "https://download.europe.naverlabs.com/ComputerVision/MultiHMR"
CODE_LICENCE_URL = "https://github.com/naver/multi-hmr/blob/main/LICENSE.txt"
ANNY_LICENCE_URL = f"{BASE_URL}/Checkpoint_License_Anny.txt"
CHUNK = 1 << 20


@dataclass(frozen=True)
class OfficialCheckpoint:
    """One file of upstream's "Pre-trained models" table (naver/multi-hmr README)."""

    name: str
    backbone: str
    resolution: int
    training_data: str
    body_model: str  # "anny": runs as is; "smplx": also needs the user's SMPLX_NEUTRAL.npz
    licence_url: str

    @property
    def url(self) -> str:
        return f"{BASE_URL}/{self.name}.pt"

    @property
    def filename(self) -> str:
        return f"{self.name}.pt"

    def licence_text(self) -> str:
        body = (
            "Anny body model (free, CC0 assets; nothing else to download)"
            if self.body_model == "anny"
            else "SMPL-X body model (also needs SMPLX_NEUTRAL.npz from https://smpl-x.is.tue.mpg.de, "
            "under its own licence)"
        )
        return (
            f"{self.name}: Multi-HMR checkpoint by NAVER Corp., ViT-{self.backbone} at {self.resolution} px, "
            f"trained on {self.training_data}; {body}.\n"
            f"Licence: {self.licence_url}\n"
            f"{self.licence_note} Read it before use: downloading means you accept it. lighthmr_ros's own "
            "Apache-2.0 licence does not cover this file."
        )

    @property
    def licence_note(self) -> str:
        if self.body_model == "anny":
            return (
                "NAVER publishes this checkpoint under its own licence (the file above); Multi-HMR's "
                "materials are licensed for NON-COMMERCIAL use."
            )
        return "NAVER's Multi-HMR licence (CC BY-NC-SA 4.0 notice): NON-COMMERCIAL use only."


def _entry(name: str, backbone: str, res: int, data: str, body: str) -> OfficialCheckpoint:
    return OfficialCheckpoint(
        name, backbone, res, data, body, ANNY_LICENCE_URL if body == "anny" else CODE_LICENCE_URL
    )


OFFICIAL: dict[str, OfficialCheckpoint] = {
    c.name: c
    for c in (
        _entry("multiHMR_672_L_anny", "L", 672, "BEDLAM+ITW+AnnyOne", "anny"),
        _entry("multiHMR_896_L", "L", 896, "BEDLAM+AGORA+CUFFS+UBody", "smplx"),
        _entry("multiHMR_672_L", "L", 672, "BEDLAM+AGORA+CUFFS+UBody", "smplx"),
        _entry("multiHMR_672_B", "B", 672, "BEDLAM+AGORA+CUFFS+UBody", "smplx"),
        _entry("multiHMR_672_S", "S", 672, "BEDLAM+AGORA+CUFFS+UBody", "smplx"),
        _entry("multiHMR_1288_L_bedlam", "L", 1288, "BEDLAM (train+val)", "smplx"),
        _entry("multiHMR_1288_L_agora", "L", 1288, "BEDLAM+AGORA (train+val)", "smplx"),
    )
}


def cache_dir(override: str | Path | None = None) -> Path:
    """The cache: ``override``, $LIGHTHMR_CACHE_DIR, $XDG_CACHE_HOME/lighthmr or ~/.cache/lighthmr."""
    if override:
        return Path(override).expanduser()
    if os.environ.get("LIGHTHMR_CACHE_DIR"):
        return Path(os.environ["LIGHTHMR_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "lighthmr"


def official(name: str) -> OfficialCheckpoint:
    """The entry of an official name (``.pt`` optional); DownloadError listing the names otherwise."""
    key = name[:-3] if name.endswith(".pt") else name
    if key not in OFFICIAL:
        raise DownloadError(
            f"{name!r} is not an official Multi-HMR checkpoint; choose one of {', '.join(OFFICIAL)}."
        )
    return OFFICIAL[key]


def resolve_name(value: str | Path, cache: str | Path | None = None) -> Path:
    """A checkpoint argument as a path: an existing file as is, an official name as its cached copy.

    Anything else comes back unchanged (the loader then says the file does not exist).
    """
    path = Path(value).expanduser()
    key = str(value)[:-3] if str(value).endswith(".pt") else str(value)
    if path.exists() or key not in OFFICIAL:
        return path
    cached = cache_dir(cache) / OFFICIAL[key].filename
    if cached.is_file():
        return cached
    raise CheckpointError(
        f"{key} is an official Multi-HMR checkpoint that is not downloaded yet; run "
        f"`lighthmr download {key} --accept-licence` (it goes to {cached.parent})."
    )


def _record_path(target: Path) -> Path:
    return target.with_name(target.name + ".sha256.json")


def read_record(target: Path) -> dict | None:
    """The size and hash recorded by the first download of ``target`` (None if none)."""
    try:
        return json.loads(_record_path(target).read_text())
    except (OSError, ValueError):
        return None


def _write_json(path: Path, data: dict) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=1)
    os.replace(tmp, path)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class DownloadResult:
    path: Path
    sha256: str
    size: int
    downloaded: bool  # False: the verified file was already in the cache
    resumed_from: int  # bytes kept from an interrupted transfer
    first_record: bool  # True: this download recorded the hash


def _open(url: str, start: int, validator: str | None, timeout: float):
    request = urllib.request.Request(url, headers={"User-Agent": "lighthmr-download"})
    if start:
        request.add_header("Range", f"bytes={start}-")
        if validator:
            request.add_header("If-Range", validator)
    return urllib.request.urlopen(request, timeout=timeout)


def _fetch(
    url: str, part: Path, meta_path: Path, timeout: float, progress: bool, label: str
) -> tuple[int, int]:
    """Append the rest of ``url`` to ``part``; returns (bytes kept from before, total size)."""
    from tqdm import tqdm

    meta = {}
    if part.exists():
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            meta = {}
        if meta.get("url") != url:
            part.unlink()
            meta = {}
    start = part.stat().st_size if part.exists() else 0
    try:
        response = _open(url, start, meta.get("validator"), timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and start:  # our part is no prefix of the file (any more): start again
            part.unlink()
            return _fetch(url, part, meta_path, timeout, progress, label)
        raise DownloadError(
            f"{url} answered HTTP {exc.code} ({exc.reason}); check the name or try again later."
        ) from exc
    except (TimeoutError, urllib.error.URLError, ConnectionError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(
            f"cannot reach {url} ({reason}); check the network connection, or fetch the file "
            f"by hand into {part.parent}."
        ) from exc
    with response:
        if response.status == 206 and start:
            mode = "ab"
            total_text = (response.headers.get("Content-Range") or "").rpartition("/")[2]
            total = (
                int(total_text)
                if total_text.isdigit()
                else start + int(response.headers.get("Content-Length", -1))
            )
        else:  # 200: the whole file (server without Range support, or the file changed)
            start, mode = 0, "wb"
            total = int(response.headers.get("Content-Length", -1))
        validator = response.headers.get("ETag") or response.headers.get("Last-Modified")
        _write_json(meta_path, {"url": url, "validator": validator, "total": total})
        bar = tqdm(
            total=total if total > 0 else None,
            initial=start,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=label,
            disable=not progress,
            file=sys.stderr,
        )
        try:
            with open(part, mode) as fh:
                while True:
                    try:
                        block = response.read(CHUNK)
                    except (OSError, http.client.HTTPException) as exc:  # connection lost mid-body
                        got = fh.tell()
                        raise DownloadError(
                            f"the transfer of {url} broke off after {got} of {total} bytes ({exc}); "
                            "run the same command again to resume it."
                        ) from exc
                    if not block:
                        break
                    fh.write(block)
                    bar.update(len(block))
        finally:
            bar.close()
    return start, total


def download(
    name: str,
    accept_licence: bool = False,
    cache: str | Path | None = None,
    url: str | None = None,
    sha256: str | None = None,
    force: bool = False,
    timeout: float = 60.0,
    progress: bool = True,
    out: TextIO | None = None,
) -> DownloadResult:
    """Fetch the official checkpoint ``name`` into the cache (see the module docstring).

    ``url`` replaces NAVER's address (a mirror); ``sha256`` is the expected hash (otherwise the one
    recorded by the first download, if any); ``force`` fetches again even when a verified copy exists.
    """
    out = out or sys.stdout
    entry = official(name)
    print(entry.licence_text(), file=out)
    if not accept_licence:
        raise DownloadError(
            f"{entry.name} comes under NAVER's licence (non-commercial use); read "
            f"{entry.licence_url} and pass --accept-licence to download it."
        )
    folder = cache_dir(cache)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(
            f"cannot create the cache folder {folder} ({exc.strerror}); pass --cache-dir "
            "or set LIGHTHMR_CACHE_DIR to a writable folder."
        ) from exc
    target = folder / entry.filename
    record = read_record(target)
    expected = (sha256 or (record or {}).get("sha256") or "").lower() or None
    if target.is_file() and not force:
        digest = sha256_of(target)
        if expected and digest != expected:
            raise DownloadError(
                f"the cached {target} has SHA-256 {digest}, expected {expected}; delete it "
                "(or pass --force) to download it again."
            )
        if record is None:
            _write_json(
                _record_path(target), {"name": entry.name, "size": target.stat().st_size, "sha256": digest}
            )
        print(f"{target} is already downloaded (SHA-256 {digest}).", file=out)
        return DownloadResult(target, digest, target.stat().st_size, False, 0, record is None)

    part = folder / f".{entry.filename}.part"
    meta_path = folder / f".{entry.filename}.part.json"
    source = url or entry.url
    kept, total = _fetch(source, part, meta_path, timeout, progress, entry.name)
    size = part.stat().st_size
    if total >= 0 and size != total:
        raise DownloadError(
            f"the transfer of {source} ended after {size} of {total} bytes; "
            "run the same command again to resume it."
        )
    recorded_size = (record or {}).get("size")
    digest = sha256_of(part)
    if (expected and digest != expected) or (recorded_size is not None and size != recorded_size):
        part.unlink(missing_ok=True)
        meta_path.unlink(missing_ok=True)
        raise DownloadError(
            f"the download of {entry.name} has SHA-256 {digest} ({size} bytes), expected "
            f"{expected} ({recorded_size or '?'} bytes); the partial file was deleted, try again "
            "(or check the mirror)."
        )
    os.replace(part, target)
    meta_path.unlink(missing_ok=True)
    first = record is None and sha256 is None
    if record is None:
        _write_json(_record_path(target), {"name": entry.name, "url": source, "size": size, "sha256": digest})
    how = f", resumed after {kept} bytes" if kept else ""
    note = " (recorded: later downloads must match it)" if first else " (verified)"
    print(f"saved {target} ({size} bytes{how}); SHA-256 {digest}{note}", file=out)
    return DownloadResult(target, digest, size, True, kept, first)
