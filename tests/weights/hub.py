"""A fake Hugging Face Hub on 127.0.0.1: /owner/repo/resolve/main/... files, Range and If-Range, LFS redirects to a
CDN, dropped connections, and switches for servers that send no validators or ignore Range or If-Range."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal


@dataclass
class Request:
    """What the hub saw of one GET, and what it answered."""

    path: str
    range: str | None
    authorization: str | None
    if_range: str | None = None
    status: int = 0
    start: int = 0  # the first byte of the file in the body
    sent: int = 0  # bytes of body written


@dataclass
class Hub:
    """Files by URL path; `drop_once` paths are cut half-way the first time they are sent whole.

    `put(..., lfs=True)` stores the bytes under /cdn/<sha256> and answers the resolve URL with a 302
    there, carrying X-Linked-Etag and X-Linked-Size, as the Hub does for LFS files; the CDN's own
    ETag is another string (an MD5, as S3's), so If-Range must use what the CDN sent.
    """

    url: str = ""
    files: dict[str, bytes] = field(default_factory=dict)
    redirects: dict[str, str] = field(default_factory=dict)  # resolve path -> CDN path (LFS files)
    modified: dict[str, int] = field(default_factory=dict)  # path -> Unix time of its current version
    drop_once: set[str] = field(default_factory=set)
    requests: list[Request] = field(default_factory=list)
    validators: Literal["etag", "last-modified", "none"] = "etag"  # what identifies a version in answers
    honour_range: bool = True  # False: every GET gets the whole file (200)
    honour_if_range: bool = True  # False: a Range is served whatever If-Range says

    def put(self, owner_repo: str, name: str, data: bytes, *, lfs: bool = False) -> str:
        """Serve `data` as hf://owner/repo/name (replacing what was there); return that source string."""
        path = f"/{owner_repo}/resolve/main/{name}"
        if lfs:
            cdn = f"/cdn/{hashlib.sha256(data).hexdigest()}"
            self.redirects[path] = cdn
            self._store(cdn, data)
        else:
            self.redirects.pop(path, None)
            self._store(path, data)
        return f"hf://{owner_repo}/{name}"

    def body_path(self, path: str) -> str:
        """Where the bytes of `path` are served from (its CDN path for an LFS file)."""
        return self.redirects.get(path, path)

    def _store(self, path: str, data: bytes) -> None:
        self.files[path] = data
        self.modified[path] = max(self.modified.values(), default=1_700_000_000) + 10

    def validator_headers(self, path: str) -> dict[str, str]:
        data = self.files[path]
        digest = hashlib.md5(data).hexdigest() if path.startswith("/cdn/") else hashlib.sha1(data).hexdigest()
        if self.validators == "etag":
            return {"ETag": f'"{digest}"', "Last-Modified": formatdate(self.modified[path], usegmt=True)}
        if self.validators == "last-modified":
            return {"Last-Modified": formatdate(self.modified[path], usegmt=True)}
        return {}


def _handler(hub: Hub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen = Request(
                self.path, self.headers.get("Range"), self.headers.get("Authorization"), self.headers.get("If-Range")
            )
            hub.requests.append(seen)
            if self.path in hub.redirects:
                cdn = hub.redirects[self.path]
                seen.status = 302
                self.send_response(302)
                self.send_header("Location", cdn)
                self.send_header("X-Linked-Etag", f'"{cdn.removeprefix("/cdn/")}"')
                self.send_header("X-Linked-Size", str(len(hub.files[cdn])))
                self.send_header("X-Repo-Commit", "0" * 40)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data = hub.files.get(self.path)
            if data is None:
                seen.status = 404
                self.send_error(404)
                return
            validators = hub.validator_headers(self.path)
            start = self._range_start(validators)
            if start is not None and start >= len(data):
                seen.status = 416
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if start is not None:
                seen.status = 206
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                seen.status = 200
                self.send_response(200)
            seen.start = start or 0
            body = data[seen.start :]
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Accept-Ranges", "bytes" if hub.honour_range else "none")
            for name, value in validators.items():
                self.send_header(name, value)
            self.end_headers()
            if self.path in hub.drop_once and seen.start == 0:
                hub.drop_once.discard(self.path)
                body = body[: len(body) // 2]
                self.close_connection = True  # the client gets half of what Content-Length promised
            seen.sent = len(body)  # before the client can have read it all
            self.wfile.write(body)
            self.wfile.flush()

        def _range_start(self, validators: dict[str, str]) -> int | None:
            """Where a honoured `Range: bytes=N-` starts; None when the whole file is to be sent."""
            wanted = self.headers.get("Range")
            if not (hub.honour_range and wanted and wanted.startswith("bytes=") and wanted.endswith("-")):
                return None
            if_range = self.headers.get("If-Range")
            if hub.honour_if_range and if_range is not None and if_range not in validators.values():
                return None  # another version than the client has: the whole current file
            return int(wanted[len("bytes=") : -1])

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@contextmanager
def running_hub() -> Iterator[Hub]:
    """A hub listening on a free loopback port for the duration of the block."""
    hub = Hub()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(hub))
    hub.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield hub
    finally:
        server.shutdown()
        server.server_close()
