"""Connections that never finish their request head are closed; sockets past the cap are refused."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest

from tests.conftest import RunningServer

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
