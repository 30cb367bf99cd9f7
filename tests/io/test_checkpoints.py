"""Official-checkpoint download code against a local server on 127.0.0.1 that serves a checkpoint
this test makes (no real network): download, hash recorded then checked, resume, offline errors."""

from __future__ import annotations

import hashlib
import http.server
import io
import threading

import pytest
import torch

from napari_seem.io.checkpoints import (
    ChecksumMismatch,
    CheckpointUnavailable,
    fetch_checkpoint,
    manual_path,
)
from napari_seem.model import build_seem, load_checkpoint
from tiny import tiny_config

FILE = "seem_focalt_v1.pt"


class Server:
    """Serves one file the way the Hugging Face 'resolve' endpoint does (ETag, commit, Range)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def _head(self, length: int, status: int = 200, extra: dict | None = None) -> None:
                self.send_response(status)
                self.send_header("ETag", f'"{hashlib.sha256(server.data).hexdigest()}"')
                self.send_header("X-Repo-Commit", "c" * 40)
                self.send_header("Content-Length", str(length))
                for key, value in (extra or {}).items():
                    self.send_header(key, value)
                self.end_headers()

            def do_HEAD(self):
                server.requests.append(("HEAD", None))
                self._head(len(server.data))

            def do_GET(self):
                rng = self.headers.get("Range")
                server.requests.append(("GET", rng))
                start = int(rng.split("=")[1].split("-")[0]) if rng else 0
                body = server.data[start:]
                if rng:
                    self._head(len(body), 206, {"Content-Range": f"bytes {start}-{len(server.data) - 1}/{len(server.data)}"})
                else:
                    self._head(len(body))
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def checkpoint_bytes() -> bytes:
    buffer = io.BytesIO()
    torch.save(build_seem(tiny_config()).state_dict(), buffer)
    return buffer.getvalue()


@pytest.fixture(autouse=True)
def _default_cache_setting(monkeypatch):
    monkeypatch.delenv("NAPARI_SEEM_CACHE", raising=False)


def test_download_records_hash_and_loads_strictly(tmp_path, checkpoint_bytes):
    server = Server(checkpoint_bytes)
    try:
        path = fetch_checkpoint("seem_focalt_v1", cache=tmp_path, endpoint=server.endpoint, progress=False)
    finally:
        server.stop()
    assert path.read_bytes() == checkpoint_bytes
    record = (tmp_path / "checkpoints" / "sha256.json").read_text()
    assert hashlib.sha256(checkpoint_bytes).hexdigest() in record
    load_checkpoint(build_seem(tiny_config()), path)
    # Later use needs no server: the cached copy is verified and returned.
    again = fetch_checkpoint("seem_focalt_v1", cache=tmp_path, endpoint=server.endpoint, progress=False)
    assert again.read_bytes() == checkpoint_bytes


def test_corrupted_cached_file_is_fetched_again_and_a_changed_server_file_is_refused(tmp_path, checkpoint_bytes):
    server = Server(checkpoint_bytes)
    try:
        path = fetch_checkpoint("seem_focalt_v1", cache=tmp_path, endpoint=server.endpoint, progress=False)
        path.write_bytes(checkpoint_bytes[:-10] + b"0123456789")  # bit rot in the cache
        healed = fetch_checkpoint("seem_focalt_v1", cache=tmp_path, endpoint=server.endpoint, progress=False)
        assert healed.read_bytes() == checkpoint_bytes
        server.data = checkpoint_bytes[:-10] + b"0123456789"  # the file on the server was replaced
        path.write_bytes(b"x")
        with pytest.raises(ChecksumMismatch, match="does not match the SHA-256 recorded"):
            fetch_checkpoint("seem_focalt_v1", cache=tmp_path, endpoint=server.endpoint, progress=False)
    finally:
        server.stop()


def test_interrupted_download_resumes_with_a_range_request(tmp_path, checkpoint_bytes):
    """A download cut off earlier (a closed laptop, a killed process) leaves a partial file; the next
    fetch continues from where it stopped instead of starting over."""
    third = len(checkpoint_bytes) // 3
    partial = manual_path("seem_focalt_v1", tmp_path).with_suffix(".pt.partial")
    partial.parent.mkdir(parents=True)
    partial.write_bytes(checkpoint_bytes[:third])
    server = Server(checkpoint_bytes)
    try:
        path = fetch_checkpoint("seem_focalt_v1", cache=tmp_path, endpoint=server.endpoint, progress=False)
    finally:
        server.stop()
    assert path.read_bytes() == checkpoint_bytes
    assert ("GET", f"bytes={third}-") in server.requests and not partial.exists()


def test_offline_error_says_where_to_put_the_file_and_manual_copy_works(tmp_path, checkpoint_bytes):
    server = Server(checkpoint_bytes)
    endpoint = server.endpoint
    server.stop()  # nothing listens there any more
    with pytest.raises(CheckpointUnavailable) as err:
        fetch_checkpoint("seem_focalt_v1", cache=tmp_path, endpoint=endpoint, progress=False)
    placed = manual_path("seem_focalt_v1", tmp_path)
    assert str(placed) in str(err.value)
    placed.parent.mkdir(parents=True, exist_ok=True)
    placed.write_bytes(checkpoint_bytes)
    assert fetch_checkpoint("seem_focalt_v1", cache=tmp_path, endpoint=endpoint, progress=False) == placed


def test_unknown_checkpoint_name():
    with pytest.raises(ValueError, match="unknown official checkpoint"):
        fetch_checkpoint("seem_focalx_v9")
