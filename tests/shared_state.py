"""Real Postgres and Redis servers from Debian's packages, started on free loopback ports for the tests."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

# Debian installs each major version under its own number; the newest one there is used.
PG_BIN = max(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name), default=Path("/nonexistent"))
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
# CI installs both through `make test` and sets this, so a missing server fails there instead of skipping.
REQUIRED = os.environ.get("PINAIVU_REQUIRE_SERVICES") == "1"


def unavailable(what: str) -> None:
    """Fail (in CI) or skip (elsewhere) a test whose server is not installed."""
    message = f"{what} is not installed (apt-get install postgresql redis-server, or `make test` as root)"
    if REQUIRED:
        pytest.fail(message)
    pytest.skip(message)


def _as_postgres(*command: str) -> list[str]:
    """`initdb` and `postgres` refuse to run as root: as root, run them as the postgres user."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else list(command)


@contextmanager
def running_postgres(port: int) -> Iterator[str]:
    """A throwaway Postgres cluster on 127.0.0.1:port (trust auth, no fsync); yields its server URL."""
    if not (PG_BIN / "initdb").exists():
        unavailable("Postgres")
    home = Path(tempfile.mkdtemp(prefix="pinaivu-pg-"))
    if os.geteuid() == 0:
        shutil.chown(home, "postgres", "postgres")
    data = home / "data"
    try:
        subprocess.run(
            _as_postgres(str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"),
            check=True,
            capture_output=True,
        )
        options = f"-p {port} -k {home} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        subprocess.run(
            _as_postgres(
                str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(home / "log"), "-w", "start"
            ),
            check=True,
            capture_output=True,
        )
        try:
            yield f"postgresql+psycopg://postgres@127.0.0.1:{port}"
        finally:
            subprocess.run(
                _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"),
                capture_output=True,
            )
    finally:
        shutil.rmtree(home, ignore_errors=True)


def create_database(server_url: str, name: str) -> str:
    """A new empty database on the server; its URL."""
    import psycopg

    with psycopg.connect(server_url.replace("+psycopg", "") + "/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{server_url}/{name}"


@contextmanager
def running_redis(port: int) -> Iterator[str]:
    """A Redis server on 127.0.0.1:port that keeps nothing on disk; yields its URL."""
    if not Path(REDIS_SERVER).exists():
        unavailable("Redis")
    import redis

    home = Path(tempfile.mkdtemp(prefix="pinaivu-redis-"))
    # DEBUG SLEEP (a stalled Redis, on purpose) from loopback clients only.
    command = [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(home)]
    command += ["--enable-debug-command", "local"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)
        client.close()
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(home, ignore_errors=True)


@contextmanager
def paused_postgres(database_url: str) -> Iterator[None]:
    """The server of this database stopped (SIGSTOP on the postmaster and every process it started) until
    the block ends: its sockets stay open and its kernel acknowledges what is sent, but nothing answers,
    as a server stalled on its disk or a paused VM. Resumed (SIGCONT) on the way out, whatever happens."""
    import psycopg

    with psycopg.connect(database_url.replace("+psycopg", ""), autocommit=True) as conn:
        data = conn.execute("SHOW data_directory").fetchone()
    assert data is not None
    postmaster = int((Path(str(data[0])) / "postmaster.pid").read_text().split()[0])
    # The postmaster first: stopped, it starts no new backend while the others are being stopped.
    os.kill(postmaster, signal.SIGSTOP)
    stopped = [postmaster]
    try:
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:  # it exited meanwhile
                continue
            if int(fields[1]) == postmaster:  # its parent
                os.kill(int(stat.parent.name), signal.SIGSTOP)
                stopped.append(int(stat.parent.name))
        yield
    finally:
        for pid in stopped:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
