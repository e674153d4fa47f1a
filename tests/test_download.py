"""``lighthmr download`` against a local HTTP server (127.0.0.1) serving a generated file.

The server is written here: it answers Range requests (206 + Content-Range) unless told not to,
honours If-Range against its ETag, and can break a transfer off after a number of bytes while
announcing the full length (what a dropped connection looks like to the client).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from lighthmr_ros import cli
from lighthmr_ros.download import download, resolve_name
from lighthmr_ros.errors import CheckpointError, DownloadError

NAME = "multiHMR_672_L_anny"
SIZE = 3 * 1024 * 1024 + 123


class FileServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.set_payload(os.urandom(SIZE))
        self.cut_after: int | None = None  # break the body off after this many bytes of a response
        self.ranges = True
        self.requests: list[dict] = []

    def set_payload(self, data: bytes) -> None:
        self.payload = data
        self.etag = '"' + hashlib.sha256(data).hexdigest()[:16] + '"'

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/{NAME}.pt"


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:  # quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        srv: FileServer = self.server
        data = srv.payload
        srv.requests.append({"range": self.headers.get("Range"), "if_range": self.headers.get("If-Range")})
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        fresh = self.headers.get("If-Range") in (None, srv.etag)
        if match and srv.ranges and fresh:
            start = int(match.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.end_headers()
                return
            body = data[start:]
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            body = data
            self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", srv.etag)
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if srv.cut_after is not None:
            self.wfile.write(body[: srv.cut_after])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body)


@pytest.fixture
def server():
    srv = FileServer()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _get(server, cache, **kw):
    out = io.StringIO()
    result = download(
        NAME, accept_licence=True, cache=cache, url=server.url, progress=False, out=out, timeout=10, **kw
    )
    return result, out.getvalue()


def _leftovers(cache) -> list[str]:
    return sorted(p.name for p in cache.iterdir() if p.name.startswith("."))


def test_first_download_records_and_prints_the_hash(server, tmp_path):
    result, text = _get(server, tmp_path)
    digest = hashlib.sha256(server.payload).hexdigest()
    target = tmp_path / f"{NAME}.pt"
    assert result.path == target and target.read_bytes() == server.payload
    assert result.sha256 == digest and result.first_record and result.resumed_from == 0
    assert f"SHA-256 {digest}" in text and "recorded" in text and "NON-COMMERCIAL" in text
    record = json.loads((tmp_path / f"{NAME}.pt.sha256.json").read_text())
    assert record["sha256"] == digest and record["size"] == SIZE
    assert _leftovers(tmp_path) == []
    # A second run verifies the cached copy against the record and fetches nothing.
    again, text = _get(server, tmp_path)
    assert not again.downloaded and "already downloaded" in text and len(server.requests) == 1
    assert resolve_name(NAME, cache=tmp_path) == target


def test_interrupted_transfer_resumes_with_range(server, tmp_path):
    server.cut_after = 1024 * 1024 + 7
    with pytest.raises(DownloadError, match="resume"):
        _get(server, tmp_path)
    assert not (tmp_path / f"{NAME}.pt").exists()  # nothing half-written under the real name
    part = tmp_path / f".{NAME}.pt.part"
    assert part.stat().st_size == server.cut_after
    server.cut_after = None
    result, text = _get(server, tmp_path)
    assert server.requests[-1] == {"range": f"bytes={1024 * 1024 + 7}-", "if_range": server.etag}
    assert result.resumed_from == 1024 * 1024 + 7 and "resumed after" in text
    assert (tmp_path / f"{NAME}.pt").read_bytes() == server.payload
    assert _leftovers(tmp_path) == []


def test_changed_file_is_fetched_again_from_the_start(server, tmp_path):
    server.cut_after = 500_000
    with pytest.raises(DownloadError):
        _get(server, tmp_path)
    server.cut_after = None
    server.set_payload(os.urandom(SIZE))  # new ETag: If-Range fails, the server sends the whole new file
    result, _ = _get(server, tmp_path)
    assert result.resumed_from == 0 and (tmp_path / f"{NAME}.pt").read_bytes() == server.payload


def test_server_without_range_support_restarts(server, tmp_path):
    server.cut_after = 200_000
    with pytest.raises(DownloadError):
        _get(server, tmp_path)
    server.cut_after, server.ranges = None, False
    result, _ = _get(server, tmp_path)
    assert result.resumed_from == 0 and (tmp_path / f"{NAME}.pt").read_bytes() == server.payload


def test_truncated_body_never_becomes_the_checkpoint(server, tmp_path):
    server.cut_after = SIZE - 1  # one byte short of the announced length
    with pytest.raises(DownloadError, match=f"of {SIZE} bytes"):
        _get(server, tmp_path)
    assert not (tmp_path / f"{NAME}.pt").exists()
    with pytest.raises(CheckpointError, match="not downloaded yet"):
        resolve_name(NAME, cache=tmp_path)


def test_wrong_hash_is_refused_and_the_part_deleted(server, tmp_path):
    with pytest.raises(DownloadError, match="SHA-256 .* expected 0000"):
        _get(server, tmp_path, sha256="0" * 64)
    assert not (tmp_path / f"{NAME}.pt").exists() and _leftovers(tmp_path) == []
    # After a first download, a later one must match the recorded hash.
    first, _ = _get(server, tmp_path)
    server.set_payload(os.urandom(SIZE))
    with pytest.raises(DownloadError, match=f"expected {first.sha256}"):
        _get(server, tmp_path, force=True)
    assert (
        hashlib.sha256((tmp_path / f"{NAME}.pt").read_bytes()).hexdigest()
        == json.loads((tmp_path / f"{NAME}.pt.sha256.json").read_text())["sha256"]
    )  # the good copy is kept


def test_no_network_is_one_clear_sentence(tmp_path, capsys):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rc = cli.main(
        [
            "download",
            NAME,
            "--accept-licence",
            "--cache-dir",
            str(tmp_path),
            "--no-progress",
            "--timeout",
            "5",
            "--url",
            f"http://127.0.0.1:{port}/{NAME}.pt",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0
    assert err.startswith("lighthmr download: error: cannot reach") and "check the network" in err


def test_licence_must_be_accepted(server, tmp_path, capsys):
    rc = cli.main(["download", NAME, "--cache-dir", str(tmp_path), "--url", server.url])
    captured = capsys.readouterr()
    assert rc == 2 and "--accept-licence" in captured.err and "Checkpoint_License_Anny.txt" in captured.out
    assert server.requests == [] and list(tmp_path.iterdir()) == []


def test_cli_downloads_with_a_progress_bar(server, tmp_path, capsys):
    rc = cli.main(["download", NAME, "--accept-licence", "--cache-dir", str(tmp_path), "--url", server.url])
    captured = capsys.readouterr()
    assert rc == 0 and (tmp_path / f"{NAME}.pt").read_bytes() == server.payload
    assert f"--checkpoint {NAME}" in captured.out
    assert "100%" in captured.err and "3.00M/3.00M" in captured.err  # tqdm's bar on stderr
    rc = cli.main(["download", "--list", "--cache-dir", str(tmp_path)])
    assert rc == 0 and re.search(rf"{NAME} .* cached, SHA-256", capsys.readouterr().out)


def test_unknown_name(tmp_path):
    with pytest.raises(
        DownloadError, match="not an official Multi-HMR checkpoint; choose one of multiHMR_672_L_anny"
    ):
        download("multiHMR_999_X", accept_licence=True, cache=tmp_path)
    assert str(resolve_name("some/local/file.pt")) == "some/local/file.pt"  # paths pass through
