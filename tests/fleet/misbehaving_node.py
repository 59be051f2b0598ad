"""A node the tests control: it lists a model, and answers every completion with the status and body it
is told to (a refusal, a failure), as a node of any kind might."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Answer:
    """What the node answers to completions: a status and a body (changed by the test as it goes)."""

    status: int = 400
    body: dict[str, object] = field(default_factory=lambda: {"error": {"message": "refused", "type": "x"}})
    requests: int = 0


@contextmanager
def misbehaving_node(model: str) -> Iterator[tuple[str, Answer]]:
    """Serve on a free loopback port; yields its URL and the Answer it gives."""
    answer = Answer()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._send(200, {"object": "list", "data": [{"id": model, "object": "model", "owned_by": "test"}]})

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length") or 0))
            answer.requests += 1
            self._send(answer.status, answer.body)

        def _send(self, status: int, body: dict[str, object]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", answer
    finally:
        server.shutdown()
        server.server_close()
