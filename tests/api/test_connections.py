"""Slow clients cannot hold the server: heads and bodies that never finish are cut off, sockets past the
cap are refused, and one key's requests in flight are capped so other keys keep their room."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest

from tests.helpers import AUTH, TEST_KEY, RunningServer

PARTIAL_HEAD = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n"  # the blank line that ends a head never comes


@pytest.fixture
def guarded(server_factory: Callable[..., RunningServer], two_models: Path) -> RunningServer:
    env = {"PINAIVU_HEADER_TIMEOUT_S": "1", "PINAIVU_MAX_CONNECTIONS": "20"}
    return server_factory("--models-file", str(two_models), env=env)


@contextmanager
def sockets(server: RunningServer, count: int, send: bytes = b"") -> Iterator[list[socket.socket]]:
    port = int(server.base_url.rsplit(":", 1)[1])
    with ExitStack() as stack:
        opened = []
        for _ in range(count):
            s = stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=10))
            if send:
                s.sendall(send)
            opened.append(s)
        yield opened


def closed_by_server(s: socket.socket, within: float) -> bool:
    """Whether the server closes `s` within `within` seconds (EOF or a reset; earlier bytes are skipped)."""
    deadline = time.monotonic() + within
    try:
        while (left := deadline - time.monotonic()) > 0:
            s.settimeout(left)
            if s.recv(65536) == b"":
                return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        pass
    return False


def test_a_head_that_never_ends_is_closed(guarded: RunningServer) -> None:
    with sockets(guarded, 10, PARTIAL_HEAD) as slow:
        assert httpx.get(f"{guarded.base_url}/health", timeout=10).status_code == 200  # others are served
        started = time.monotonic()
        assert all(closed_by_server(s, within=10) for s in slow)
        assert time.monotonic() - started < 10
    assert httpx.get(f"{guarded.base_url}/health", timeout=10).status_code == 200


def test_an_idle_keep_alive_connection_must_send_its_next_head_in_time(guarded: RunningServer) -> None:
    with sockets(guarded, 1) as (s,):
        s.sendall(PARTIAL_HEAD + b"\r\n")
        assert b"200 OK" in s.recv(65536)
        time.sleep(0.5)  # the whole response is in (closed_by_server skips the rest of it)
        s.sendall(PARTIAL_HEAD)  # a second request, never finished
        assert closed_by_server(s, within=10)


def test_sockets_past_the_cap_are_refused(guarded: RunningServer) -> None:
    with sockets(guarded, 30) as many:
        time.sleep(0.3)  # every one accepted or refused by now
        refused = [s for s in many if closed_by_server(s, within=0.2)]
        assert len(refused) >= 10
    assert httpx.get(f"{guarded.base_url}/health", timeout=10).status_code == 200
    assert "refused a connection" in guarded.log()


def dripping_head(key: str, length: int = 1_000_000) -> bytes:
    """A whole chat request head promising `length` bytes of body, and the body's first byte."""
    return (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n{{"
    ).encode()


@contextmanager
def dripping(held: list[socket.socket], every_s: float = 0.3) -> Iterator[None]:
    """Send one more body byte on each socket every `every_s`, as a slow-loris client does."""
    stop = threading.Event()

    def drip() -> None:
        while not stop.wait(every_s):
            for s in held:
                with contextlib.suppress(OSError):  # closed by the server: what the test waits for
                    s.sendall(b" ")

    thread = threading.Thread(target=drip, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def response_head(s: socket.socket, within: float) -> bytes:
    """What the server sent on `s` before closing it (or within `within` seconds)."""
    s.settimeout(within)
    received = b""
    try:
        while chunk := s.recv(65536):
            received += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return received


def new_key(server: RunningServer, name: str) -> str:
    made = httpx.post(f"{server.base_url}/admin/keys", json={"name": name}, headers=AUTH, timeout=10)
    return str(made.json()["key"])


def chat(server: RunningServer, key: str) -> httpx.Response:
    body = {"model": "llama3.2:1b", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    return httpx.post(
        f"{server.v1}/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}, timeout=30
    )


def test_a_body_dripped_a_byte_at_a_time_gets_408_and_its_connection_closes(
    server_factory: Callable[..., RunningServer], two_models: Path
) -> None:
    """Each byte arrives well inside any per-read timeout; the deadline counts from the head all the same."""
    server = server_factory("--models-file", str(two_models), env={"PINAIVU_BODY_TIMEOUT_S": "2"})
    with sockets(server, 1, dripping_head(TEST_KEY)) as held, dripping(held):
        answer = response_head(held[0], within=30)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), answer[:300]
    assert b"connection: close" in head.lower()
    assert json.loads(body)["error"]["code"] == "request_timeout"
    assert chat(server, TEST_KEY).status_code == 200  # the key's place in flight was given back


def test_one_key_cannot_hold_every_connection(server_factory: Callable[..., RunningServer], two_models: Path) -> None:
    """A key at its cap of requests in flight is refused at once (429); another key is served meanwhile;
    the places come back when the held requests end."""
    env = {"PINAIVU_MAX_CONNECTIONS": "20", "PINAIVU_MAX_IN_FLIGHT_PER_KEY": "3"}
    server = server_factory("--models-file", str(two_models), env=env)
    other = new_key(server, "other")
    with sockets(server, 3, dripping_head(TEST_KEY)) as held, dripping(held):
        deadline = time.monotonic() + 30
        while (refused := chat(server, TEST_KEY)).status_code != 429 and time.monotonic() < deadline:
            time.sleep(0.1)  # until the server has read the three heads
        assert refused.status_code == 429, refused.text[:300]
        error = refused.json()["error"]
        assert error["code"] == "rate_limit_exceeded" and "in flight" in error["message"]
        assert refused.headers["retry-after"] == "1"
        assert chat(server, other).status_code == 200
    deadline = time.monotonic() + 30
    while (again := chat(server, TEST_KEY)).status_code == 429 and time.monotonic() < deadline:
        time.sleep(0.1)  # until the server has seen the three sockets close
    assert again.status_code == 200
