"""How fast others are served while hostile requests arrive: `python -m pinaivu_local.bench.hostile`.

Against a running server: one key sends megabytes of special-token strings (chats that cannot fit)
in a loop while another polls /health and sends small chats; prints their latency percentiles.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from collections.abc import Callable

import httpx

HOSTILE_CHAT = {"model": "llama3.2:1b", "messages": [{"role": "user", "content": "<|eot_id|>" * 80_000}]}
MANY_MESSAGES = {
    "model": "llama3.2:1b",
    "messages": [{"role": "user", "content": "<|start_header_id|>" * 1000} for _ in range(500)],
}
SMALL_CHAT = {"model": "llama3.2:1b", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


def percentiles(samples: list[float]) -> str:
    """p50 / p99 / max in milliseconds."""
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return f"p50 {statistics.median(ordered) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, max {ordered[-1] * 1000:.1f} ms"


def timed(call: Callable[[], httpx.Response], into: list[float], statuses: list[int]) -> None:
    started = time.monotonic()
    response = call()
    into.append(time.monotonic() - started)
    statuses.append(response.status_code)


def main() -> None:
    """Run the measurement for --seconds and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base-url", default="http://127.0.0.1:8080")
    parser.add_argument("--hostile-key", required=True)
    parser.add_argument("--other-key", required=True)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--no-attack", action="store_true", help="the same measurement with nobody hostile")
    args = parser.parse_args()
    deadline = time.monotonic() + args.seconds
    hostile_times: list[float] = []
    hostile_statuses: list[int] = []

    def attack(body: dict[str, object]) -> None:
        with httpx.Client(base_url=args.base_url, timeout=300) as http:
            headers = {"authorization": f"Bearer {args.hostile_key}"}
            while time.monotonic() < deadline:
                timed(
                    lambda: http.post("/v1/chat/completions", json=body, headers=headers),
                    hostile_times,
                    hostile_statuses,
                )

    bodies = [] if args.no_attack else [HOSTILE_CHAT, HOSTILE_CHAT, MANY_MESSAGES]
    attackers = [threading.Thread(target=attack, args=(b,)) for b in bodies]
    for thread in attackers:
        thread.start()
    health: list[float] = []
    chats: list[float] = []
    statuses: list[int] = []
    with httpx.Client(base_url=args.base_url, timeout=300) as http:
        headers = {"authorization": f"Bearer {args.other_key}"}
        while time.monotonic() < deadline:
            timed(lambda: http.get("/health"), health, statuses)
            timed(lambda: http.post("/v1/chat/completions", json=SMALL_CHAT, headers=headers), chats, statuses)
    for thread in attackers:
        thread.join()
    if hostile_times:
        refused = sorted(set(hostile_statuses))
        print(f"hostile requests: {len(hostile_times)}, statuses {refused}, {percentiles(hostile_times)}")
    print(f"/health while attacked: {len(health)} requests, {percentiles(health)}")
    print(f"small chat from another key: {len(chats)} requests, {percentiles(chats)}")
    print(f"their statuses: {sorted(set(statuses))}")


if __name__ == "__main__":
    main()
