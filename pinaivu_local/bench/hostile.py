"""How fast others are served while one key attacks: `python -m pinaivu_local.bench.hostile`.

Against a running server: for each attack in turn (and first with nobody hostile), one key attacks
while another polls /v1/node and sends small chats; prints the other key's latency percentiles. Give
the hostile key a small requests limit (`keys create --rpm 2`) to see refused work being counted.

Attacks: megabytes of special-token strings (chats that cannot fit), megabytes of tool-call arguments,
large JSON schemas that cannot fit, 9 MB receipt checks, and bodies dripped a byte at a time on
many sockets.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import statistics
import threading
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx

HOSTILE_CHAT: dict[str, object] = {
    "model": "llama3.2:1b",
    "messages": [{"role": "user", "content": "<|eot_id|>" * 80_000}],
}
MANY_MESSAGES: dict[str, object] = {
    "model": "llama3.2:1b",
    "messages": [{"role": "user", "content": "<|start_header_id|>" * 1000} for _ in range(500)],
}
_CALL = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": json.dumps({"x": "a" * 8_000_000})}}
BIG_ARGUMENTS: dict[str, object] = {
    "model": "llama3.2:1b",
    "messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "tool_calls": [_CALL]},
        {"role": "tool", "tool_call_id": "c1", "content": "ok"},
    ],
}
_SCHEMA = {"type": "object", "properties": {f"p{i}": {"enum": [f"v{j}" for j in range(50)]} for i in range(300)}}
BIG_SCHEMA: dict[str, object] = {
    "model": "llama3.2:1b",
    "messages": [{"role": "user", "content": "hi"}],
    "max_tokens": 10**7,  # compiled, then refused: it cannot fit
    "response_format": {"type": "json_schema", "json_schema": {"name": "big", "schema": _SCHEMA}},
}
SMALL_CHAT = {"model": "llama3.2:1b", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
RECEIPT_BODY = b'{"receipt": {"x": "' + b"a" * 9_000_000 + b'"}, "signature": "s"}'

# An attack: (name, the bodies each attacking thread posts to /v1/chat/completions in a loop).
ATTACKS: dict[str, list[dict[str, object]]] = {
    "special-tokens": [HOSTILE_CHAT, HOSTILE_CHAT, MANY_MESSAGES],
    "arguments": [BIG_ARGUMENTS, BIG_ARGUMENTS],
    "schemas": [BIG_SCHEMA, BIG_SCHEMA],
    "receipts": [],
    "slow-bodies": [],
}


def percentiles(samples: list[float]) -> str:
    """p50 / p99 / max in milliseconds."""
    if not samples:
        return "no samples"
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return f"p50 {statistics.median(ordered) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, max {ordered[-1] * 1000:.1f} ms"


def timed(call: Callable[[], httpx.Response], into: list[float], statuses: list[int]) -> None:
    started = time.monotonic()
    try:
        response = call()
        statuses.append(response.status_code)
    except httpx.HTTPError:
        statuses.append(0)  # the attack's own requests may be cut off: that is not a figure of ours
    into.append(time.monotonic() - started)


def _attackers(
    args: argparse.Namespace, attack: str, deadline: float, times: list[float], statuses: list[int]
) -> list[threading.Thread]:
    headers = {"authorization": f"Bearer {args.hostile_key}"}

    def post_loop(path: str, **request: object) -> None:
        with httpx.Client(base_url=args.base_url, timeout=300) as http:
            while time.monotonic() < deadline:
                timed(lambda: http.post(path, headers=headers, **request), times, statuses)  # type: ignore[arg-type]

    if attack == "receipts":
        return [threading.Thread(target=post_loop, args=("/v1/receipts/verify",), kwargs={"content": RECEIPT_BODY})]
    if attack == "slow-bodies":
        return [threading.Thread(target=_drip, args=(args, deadline, statuses))]
    return [
        threading.Thread(target=post_loop, args=("/v1/chat/completions",), kwargs={"json": b}) for b in ATTACKS[attack]
    ]


def _drip(args: argparse.Namespace, deadline: float, statuses: list[int]) -> None:
    """Hold --sockets requests whose bodies come a byte a second, reopening those the server closes."""
    url = urlsplit(args.base_url)
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {url.hostname}\r\nAuthorization: Bearer {args.hostile_key}\r\n"
        "Content-Type: application/json\r\nContent-Length: 1000000\r\n\r\n{"
    ).encode()
    held: list[socket.socket] = []
    while time.monotonic() < deadline:
        while len(held) < args.sockets:
            try:
                s = socket.create_connection((url.hostname, url.port or 80), timeout=5)
                s.sendall(head)
                held.append(s)
            except OSError:
                statuses.append(0)
                break
        time.sleep(1)
        for s in list(held):
            try:
                s.sendall(b" ")
            except OSError:
                held.remove(s)
                statuses.append(408)
    for s in held:
        with contextlib.suppress(OSError):
            s.close()


def measure(args: argparse.Namespace, attack: str | None) -> None:
    """One attack (None: nobody hostile) for --seconds; prints the other key's figures."""
    deadline = time.monotonic() + args.seconds
    hostile_times: list[float] = []
    hostile_statuses: list[int] = []
    attackers = _attackers(args, attack, deadline, hostile_times, hostile_statuses) if attack else []
    for thread in attackers:
        thread.start()
    node: list[float] = []
    chats: list[float] = []
    statuses: list[int] = []
    with httpx.Client(base_url=args.base_url, timeout=300) as http:
        headers = {"authorization": f"Bearer {args.other_key}"}
        while time.monotonic() < deadline:
            timed(lambda: http.get("/v1/node"), node, statuses)
            timed(lambda: http.post("/v1/chat/completions", json=SMALL_CHAT, headers=headers), chats, statuses)
    for thread in attackers:
        thread.join()
    print(f"== {attack or 'no attack'}")
    if hostile_statuses:
        counts = {s: hostile_statuses.count(s) for s in sorted(set(hostile_statuses))}
        print(f"  hostile requests: {len(hostile_statuses)}, statuses {counts}, {percentiles(hostile_times)}")
    print(f"  /v1/node: {len(node)} requests, {percentiles(node)}")
    print(f"  small chat from another key: {len(chats)} requests, {percentiles(chats)}")
    print(f"  their statuses: {sorted(set(statuses))}")


def main() -> None:
    """Run each attack for --seconds and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", default="http://127.0.0.1:8080")
    parser.add_argument("--hostile-key", required=True)
    parser.add_argument("--other-key", required=True)
    parser.add_argument("--seconds", type=float, default=20.0, help="per attack")
    parser.add_argument("--attack", action="append", choices=sorted(ATTACKS), help="repeat for several (default: all)")
    parser.add_argument("--sockets", type=int, default=200, help="slow-bodies: sockets held at once")
    args = parser.parse_args()
    measure(args, None)
    for attack in args.attack or list(ATTACKS):
        measure(args, attack)


if __name__ == "__main__":
    main()
