"""A node the tests control: it lists a model, and answers every completion with the status and body it
is told to (a refusal, a failure), or with a stream that misbehaves as it is told to (without end, one
endless line, a huge receipt, comments forever, impossible usage), as a node of any kind might."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from pinaivu_local.receipts.identity import key_id_of

# The streams it can send instead of `status` and `body`:
#   endless        a chunk of text after another, without end
#   endless_junk   chunks without text, each with 100 KB of padding, without end
#   endless_empty  chunks without text, without end
#   huge_line      one `data:` line that never ends
#   comments       a role chunk, then SSE comments forever (a keep-alive that says nothing)
#   slow_text      a chunk of text every 0.2 s, without end
#   slow_counted   the same, each chunk with usage saying two tokens more (vLLM's continuous usage)
#   huge_receipt   three chunks of text and a usage chunk carrying a 500 KB receipt (under the line bound)
#   usage          three chunks of text and a usage chunk reporting `Answer.usage`
#   huge_header    a 200 whose headers hold 1 MB
#   receipt        three chunks of text, and a usage chunk with a receipt signed as `Answer.signer` says
STREAMS = (
    "endless",
    "endless_junk",
    "endless_empty",
    "huge_line",
    "comments",
    "slow_text",
    "slow_counted",
    "huge_receipt",
    "usage",
    "huge_header",
    "receipt",
)


class Signer:
    """A pinaivu node's signing identity, as its /v1/node publishes it and its receipts are signed."""

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self.private = Ed25519PrivateKey.generate()
        self.retired: list[dict[str, Any]] = []

    def key(self) -> dict[str, Any]:
        raw = self.private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return {
            "key_id": key_id_of(raw),
            "algorithm": "ed25519",
            "public_key": base64.b64encode(raw).decode(),
            "created_at": "2026-01-01T00:00:00Z",
            "retired_at": None,
        }

    def document(self) -> dict[str, Any]:
        """What its GET /v1/node answers."""
        return {
            "object": "node",
            "receipt_format": "pinaivu-receipt/1",
            "node_id": self.node_id,
            "algorithm": "ed25519",
            "current_key": self.key(),
            "retired_keys": self.retired,
        }

    def rotate(self) -> None:
        """A published rotation: a new key, the old one listed as retired."""
        self.retired.append({**self.key(), "retired_at": "2026-01-02T00:00:00Z"})
        self.private = Ed25519PrivateKey.generate()

    def envelope(self, model: str, output: str) -> dict[str, Any]:
        """A receipt of a three-token answer, signed with the current key."""
        document = {
            "format": "pinaivu-receipt/1",
            "algorithm": "ed25519",
            "request_id": "req_node",
            "node_id": self.node_id,
            "key_id": self.key()["key_id"],
            "kind": "chat",
            "model": model,
            "model_sha256": "ab" * 32,
            "input_sha256": "cd" * 32,
            "output_sha256": hashlib.sha256(output.encode()).hexdigest(),
            "prompt_tokens": 5,
            "completion_tokens": 3,
            "sampling_sha256": "ef" * 32,
            "finish_reason": "stop",
            "created": 1_700_000_000,
            "replay_of": None,
        }
        signed = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        return {"receipt": document, "signature": base64.b64encode(self.private.sign(signed)).decode()}


@dataclass
class Answer:
    """What the node answers to completions: a status and a body, or a stream (changed by the test as it goes)."""

    status: int = 400
    body: dict[str, object] = field(default_factory=lambda: {"error": {"message": "refused", "type": "x"}})
    requests: int = 0
    stream: str | None = None  # one of STREAMS, instead of `status` and `body`
    usage: object = None  # what the `usage` stream reports
    models_padding: int = 0  # bytes of padding in /v1/models (a huge listing)
    received: list[dict[str, Any]] = field(default_factory=list)  # the completion bodies it was sent
    echo_key: bool = False  # its refusal's message quotes the authorization header it was sent
    # As a pinaivu node (kind = "pinaivu"): its /health reports `slots`, its /v1/node publishes `identity`,
    # and the `receipt` stream is signed by `signer` (`identity` itself, or another node's).
    slots: int = 2
    identity: Signer = field(default_factory=lambda: Signer("node-odd"))
    signer: Signer | None = None  # None: signed by `identity`


def _chunk(content: str | None = None, finish: str | None = None, **extra: object) -> bytes:
    delta = {} if content is None else {"content": content}
    body = {
        "id": "c",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + json.dumps({**body, **extra}).encode() + b"\n\n"


@contextmanager
def misbehaving_node(model: str) -> Iterator[tuple[str, Answer]]:
    """Serve on a free loopback port; yields its URL and the Answer it gives."""
    answer = Answer()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/health":
                slots = {"id": model, "slots": answer.slots, "running": 0, "queued": 0}
                self._send(200, {"status": "ok", "models": [slots]})
                return
            if self.path == "/v1/node":
                self._send(200, answer.identity.document())
                return
            listing: dict[str, object] = {
                "object": "list",
                "data": [{"id": model, "object": "model", "owned_by": "test"}],
            }
            if answer.models_padding:
                listing["padding"] = "x" * answer.models_padding
            self._send(200, listing)

        def do_POST(self) -> None:
            received = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}")
            answer.requests += 1
            answer.received.append(received)
            if answer.stream is None:
                quoted = {"error": {"message": f"refused {self.headers.get('authorization')}", "type": "x"}}
                self._send(answer.status, quoted if answer.echo_key else answer.body)
                return
            with contextlib.suppress(OSError):  # the gateway stopped reading and closed the connection
                self._stream(answer.stream)

        def _stream(self, kind: str) -> None:
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            if kind == "huge_header":
                self.send_header("x-junk", "x" * 1024 * 1024)
            self.end_headers()
            write = self.wfile.write
            if kind == "endless":
                while True:
                    write(_chunk("word "))
            elif kind == "endless_junk":
                while True:
                    write(_chunk(padding="p" * 100_000))
            elif kind == "endless_empty":
                while True:
                    write(_chunk())
            elif kind == "huge_line":
                write(b'data: {"choices": [{"delta": {"content": "')
                while True:
                    write(b"a" * 65536)
            elif kind == "comments":
                write(_chunk(""))
                while True:
                    write(b": keep-alive\n\n")
                    self.wfile.flush()
                    time.sleep(0.05)
            elif kind in ("slow_text", "slow_counted"):
                sent = 0
                while True:
                    sent += 1
                    usage = {"prompt_tokens": 5, "completion_tokens": 2 * sent} if kind == "slow_counted" else None
                    write(_chunk("tick ", usage=usage))
                    time.sleep(0.2)
            else:
                for word in ("one ", "two ", "three"):
                    write(_chunk(word))
                write(_chunk(finish="stop"))
                usage = answer.usage if kind == "usage" else {"prompt_tokens": 5, "completion_tokens": 3}
                extra: dict[str, object] = {"usage": usage}
                if kind == "huge_receipt":
                    extra["pinaivu_receipt"] = {"receipt": {"padding": "r" * 500_000}, "signature": "s"}
                if kind == "receipt":
                    extra["pinaivu_receipt"] = (answer.signer or answer.identity).envelope(model, "one two three")
                write(b"data: " + json.dumps({"id": "c", "choices": [], **extra}).encode() + b"\n\n")
                write(b"data: [DONE]\n\n")

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
    server.daemon_threads = True  # an endless stream's thread never holds up the end of a test
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", answer
    finally:
        server.shutdown()
        server.server_close()
