"""A fake Hugging Face Hub on 127.0.0.1: /owner/repo/resolve/main/... files, Range requests, dropped connections."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Request:
    """What the hub saw of one GET."""

    path: str
    range: str | None
    authorization: str | None


@dataclass
class Hub:
    """Files by URL path; `drop_once` paths are cut half-way the first time they are sent whole."""

    url: str = ""
    files: dict[str, bytes] = field(default_factory=dict)
    drop_once: set[str] = field(default_factory=set)
    requests: list[Request] = field(default_factory=list)

    def put(self, owner_repo: str, name: str, data: bytes) -> str:
        """Serve `data` as hf://owner/repo/name; return that source string."""
        self.files[f"/{owner_repo}/resolve/main/{name}"] = data
        return f"hf://{owner_repo}/{name}"


def _handler(hub: Hub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hub.requests.append(Request(self.path, self.headers.get("Range"), self.headers.get("Authorization")))
            data = hub.files.get(self.path)
            if data is None:
                self.send_error(404)
                return
            start = 0
            wanted = self.headers.get("Range")
            if wanted and wanted.startswith("bytes=") and wanted.endswith("-"):
                start = int(wanted[len("bytes=") : -1])
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            body = data[start:]
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            if self.path in hub.drop_once and start == 0:
                hub.drop_once.discard(self.path)
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True  # the client gets half of what Content-Length promised
                return
            self.wfile.write(body)

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
