"""A node is trusted within bounds: a real gateway (`serve --nodes ... --no-local`) in front of a node the test
makes misbehave. Whatever it sends, the client gets a clean answer or error, the gateway's memory stays
bounded, and the node is counted against."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fleet.misbehaving_node import Answer, misbehaving_node
from tests.fleet.test_gateway import chat_body, node_view, nodes_file, record_of, wait_for
from tests.helpers import AUTH, TEST_KEY, RunningServer, start_server

MODEL = "llama3.2:1b"
# A node silent for 3 s, or busy with one request for 6 s, is given up on.
GATEWAY_ENV = {
    "PINAIVU_NODE_POLL_S": "0.5",
    "PINAIVU_NODE_TIMEOUT_S": "3",
    "PINAIVU_NODE_DEADLINE_S": "6",
    "NODE_KEY": TEST_KEY,
}
# What the gateway's resident memory may grow by while a node misbehaves (it grew by gigabytes).
RSS_GROWTH_LIMIT = 150 * 1024 * 1024


@dataclass
class Gateway:
    server: RunningServer
    answer: Answer

    def up(self) -> None:
        wait_for(lambda: node_view(self.server, "odd")["state"] == "up", 30, "the node to be up")


@contextlib.contextmanager
def gateway_before_odd_node(workdir: Path, model: str) -> Iterator[Gateway]:
    """A pure gateway in front of one misbehaving node, `odd` (kind openai), that serves `model`."""
    with misbehaving_node(model) as (url, answer):
        listed = nodes_file(workdir / "nodes.toml", {"odd": url}, kind="openai")
        server = start_server(workdir, "--nodes", str(listed), "--no-local", env=GATEWAY_ENV)
        try:
            yield Gateway(server, answer)
        finally:
            server.stop()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with gateway_before_odd_node(tmp_path_factory.mktemp("bounds"), MODEL) as gateway:
        yield gateway


@pytest.fixture
def odd(gateway: Gateway) -> Gateway:
    """The gateway, its node up again and answering normally."""
    gateway.answer.stream, gateway.answer.models_padding = "usage", 0
    gateway.answer.usage = {"prompt_tokens": 5, "completion_tokens": 3}
    gateway.up()
    return gateway


def rss(server: RunningServer) -> int:
    status = Path(f"/proc/{server.process.pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))) * 1024


def streamed(server: RunningServer, body: dict[str, Any], headers: dict[str, str] = AUTH) -> list[dict[str, Any]]:
    """A streamed chat's events (the status must be 200)."""
    with httpx.stream("POST", f"{server.v1}/chat/completions", json=body, headers=headers, timeout=60) as response:
        assert response.status_code == 200, response.read()
        return [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: {")]


def text_of(events: list[dict[str, Any]]) -> str:
    return "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e.get("choices"))


def test_a_node_streaming_without_end_is_cut_at_max_tokens(odd: Gateway) -> None:
    """The client asked for 4 tokens and got 460 MB: now 4 chunks, finish_reason length, and the node is out."""
    odd.answer.stream = "endless"
    before = rss(odd.server)
    events = streamed(odd.server, chat_body(max_tokens=4, stream=True, stream_options={"include_usage": True}))
    assert text_of(events) == "word " * 4
    assert [c["finish_reason"] for e in events for c in e.get("choices", []) if c["finish_reason"]] == ["length"]
    assert events[-1]["usage"]["completion_tokens"] == 4
    whole = httpx.post(f"{odd.server.v1}/chat/completions", json=chat_body(max_tokens=4), headers=AUTH, timeout=60)
    if whole.status_code == 200:  # the node was back in rotation in between
        assert whole.json()["choices"][0]["finish_reason"] == "length"
        record = record_of(odd.server, whole.json()["request_id"])
        assert record["usage"]["completion_tokens"] == 4 and record["usage_source"] == "gateway"
    else:
        assert whole.status_code == 503 and whole.json()["error"]["code"] == "no_nodes_available"
    assert rss(odd.server) - before < RSS_GROWTH_LIMIT
    assert "more than the 4 tokens asked" in (node_view(odd.server, "odd")["last_error"] or "")


@pytest.mark.parametrize(
    ("stream", "reason"),
    [
        ("endless_junk", "bytes for a budget of 4 tokens"),
        ("endless_empty", "events for a budget of 4 tokens"),
        ("huge_line", "a line over"),
        ("comments", "silent for 3 s"),
        ("huge_receipt", "a receipt over"),
    ],
)
def test_a_node_past_a_bound_is_a_clean_error_and_counted_against(odd: Gateway, stream: str, reason: str) -> None:
    odd.answer.stream = stream
    before = rss(odd.server)
    whole = httpx.post(f"{odd.server.v1}/chat/completions", json=chat_body(max_tokens=4), headers=AUTH, timeout=60)
    assert whole.status_code == 503 and whole.json()["error"]["code"] == "no_nodes_available"
    assert reason in (node_view(odd.server, "odd")["last_error"] or "")
    odd.up()
    events = streamed(odd.server, chat_body(max_tokens=4, stream=True))
    assert events[-1]["error"]["code"] in ("no_nodes_available", "engine_error")  # in-band, after the 200
    assert rss(odd.server) - before < RSS_GROWTH_LIMIT
    assert httpx.get(f"{odd.server.base_url}/health", timeout=10).status_code in (200, 503)


def test_text_forever_stops_at_the_deadline(odd: Gateway) -> None:
    """A chunk every 0.2 s keeps the node from ever being silent for 3 s: the 6 s deadline ends it."""
    odd.answer.stream = "slow_text"
    events = streamed(odd.server, chat_body(max_tokens=1000, stream=True))
    assert text_of(events).startswith("tick ")
    assert events[-1]["error"]["code"] == "engine_error" and "deadline" in events[-1]["error"]["message"]
    assert "past its deadline" in (node_view(odd.server, "odd")["last_error"] or "")


def test_huge_headers_are_refused(odd: Gateway) -> None:
    odd.answer.stream = "huge_header"
    whole = httpx.post(f"{odd.server.v1}/chat/completions", json=chat_body(max_tokens=4), headers=AUTH, timeout=60)
    assert whole.status_code == 503
    assert node_view(odd.server, "odd")["state"] == "down"


def test_a_huge_model_listing_is_refused_unread(odd: Gateway) -> None:
    before = rss(odd.server)
    odd.answer.models_padding = 50 * 1024 * 1024
    wait_for(lambda: node_view(odd.server, "odd")["state"] == "down", 30, "the node to be down")
    assert "over 4194304 bytes" in (node_view(odd.server, "odd")["last_error"] or "")
    assert rss(odd.server) - before < RSS_GROWTH_LIMIT
    odd.answer.models_padding = 0
    odd.up()


def new_key(server: RunningServer, tpm: int) -> dict[str, str]:
    created = httpx.post(f"{server.base_url}/admin/keys", json={"name": "quota", "tpm": tpm}, headers=AUTH, timeout=10)
    assert created.status_code in (200, 201), created.text
    return {"authorization": f"Bearer {created.json()['key']}"}


@pytest.mark.parametrize(
    "usage",
    [
        {"prompt_tokens": -2_000_000_000, "completion_tokens": -5},
        {"prompt_tokens": 5.5, "completion_tokens": 3.0},
        {"prompt_tokens": "5", "completion_tokens": "3"},
        {"prompt_tokens": 10**30, "completion_tokens": 10**30},
        {"prompt_tokens": 5, "completion_tokens": 10**30},
        {"prompt_tokens": True, "completion_tokens": 3},
        "lots",
    ],
)
def test_impossible_usage_is_counted_at_the_gateway(odd: Gateway, usage: object) -> None:
    """Negative usage credited a key with 2 billion tokens; strings and floats cut streams without a record;
    10^30 locked the key out. Now the gateway counts (its prompt estimate, a token per chunk) and says so."""
    headers = new_key(odd.server, tpm=1_000_000)
    odd.answer.usage = usage
    whole = httpx.post(f"{odd.server.v1}/chat/completions", json=chat_body(max_tokens=8), headers=headers, timeout=60)
    assert whole.status_code == 200, whole.text
    counted = whole.json()["usage"]
    assert counted["completion_tokens"] == 3 and 0 < counted["prompt_tokens"] < 100
    record = record_of(odd.server, whole.json()["request_id"])
    assert record["usage_source"] == "gateway" and record["usage"]["completion_tokens"] == 3
    assert 0 <= int(whole.headers["x-ratelimit-remaining-tokens"]) < 1_000_000
    assert "impossible usage" in (node_view(odd.server, "odd")["last_error"] or "")
    odd.up()
    events = streamed(odd.server, chat_body(max_tokens=8, stream=True, stream_options={"include_usage": True}), headers)
    assert text_of(events) == "one two three" and events[-1]["usage"]["completion_tokens"] == 3
    again = httpx.post(f"{odd.server.v1}/chat/completions", json=chat_body(max_tokens=8), headers=headers, timeout=60)
    assert again.status_code in (200, 503), again.text  # never locked out (a 503: the node not back yet)
    assert 0 <= int(again.headers["x-ratelimit-remaining-tokens"]) < 1_000_000


def test_sane_usage_is_the_nodes(odd: Gateway) -> None:
    whole = httpx.post(f"{odd.server.v1}/chat/completions", json=chat_body(max_tokens=8), headers=AUTH, timeout=60)
    assert whole.json()["usage"]["prompt_tokens"] == 5
    assert record_of(odd.server, whole.json()["request_id"])["usage_source"] == "node"


def test_a_stream_cut_short_is_charged_what_the_node_counted(odd: Gateway) -> None:
    """The client leaves after three chunks of a node that reports its count as it goes (two tokens a chunk):
    charged the node's count, not one token per chunk."""
    odd.answer.stream = "slow_counted"
    body = chat_body("leave early", max_tokens=1000, stream=True)
    with httpx.stream("POST", f"{odd.server.v1}/chat/completions", json=body, headers=AUTH, timeout=60) as response:
        texts = 0
        for line in response.iter_lines():
            if line.startswith("data: {") and "tick" in line:
                texts += 1
                if texts == 3:
                    break
    request_id = response.headers["x-request-id"]

    def recorded() -> bool:
        return httpx.get(f"{odd.server.v1}/requests/{request_id}", headers=AUTH, timeout=10).status_code == 200

    wait_for(recorded, 30, "the record of the stream cut short")
    record = record_of(odd.server, request_id)
    assert record["status"] == 499 and record["usage_source"] == "gateway"
    assert record["usage"]["completion_tokens"] >= 6  # the node's count, at least twice the chunks seen


def test_the_node_key_never_reaches_a_client(odd: Gateway) -> None:
    """A node that quotes the key it was sent: its refusal reaches the client, and its failure /health,
    without the key; /health shows the public the error's class, not its text, nor the node's URL."""
    odd.answer.stream, odd.answer.echo_key, odd.answer.status = None, True, 400
    try:
        refused = httpx.post(f"{odd.server.v1}/chat/completions", json=chat_body(), headers=AUTH, timeout=30)
        assert refused.status_code == 400 and "[the node key]" in refused.json()["error"]["message"]
        assert TEST_KEY not in refused.text
        odd.answer.status = 500
        failed = httpx.post(f"{odd.server.v1}/chat/completions", json=chat_body(), headers=AUTH, timeout=30)
        assert failed.status_code == 503 and TEST_KEY not in failed.text
        admin = node_view(odd.server, "odd")
        assert admin["last_error_class"] == "http_status" and admin["url"].startswith("http://127.0.0.1:")
        public = httpx.get(f"{odd.server.base_url}/health", timeout=10)
        assert (
            TEST_KEY not in public.text
            and TEST_KEY not in httpx.get(f"{odd.server.base_url}/health", headers=AUTH).text
        )
        shown = next(n for n in public.json()["nodes"] if n["name"] == "odd")
        assert shown["last_error_class"] == "http_status" and shown["last_error"] is None and shown["url"] is None
    finally:
        odd.answer.echo_key = False
