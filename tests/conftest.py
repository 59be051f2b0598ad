"""Shared fixtures: tiny models generated once per run, and real servers on free loopback ports."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from pinaivu_local.tiny_gguf import TinyShape, write_tiny_model
from tests.shared_state import create_database, running_postgres, running_redis
from tests.weights.hub import Hub, running_hub

START_TIMEOUT_S = 60
# The admin key every test server is started with (imported from PINAIVU_API_KEY).
TEST_KEY = "sk-pnv-test-" + "k" * 40
AUTH = {"authorization": f"Bearer {TEST_KEY}"}
# logit_bias banning the tiny vocabulary's end-of-generation tokens (<|end_of_text|>, <|eot_id|>,
# <|eom_id|>), so a generation runs exactly to its budget.
NO_EOG = {"321": -100, "324": -100, "325": -100}


@dataclass(frozen=True)
class TinyModels:
    """Paths of the generated models."""

    f16: Path
    q8: Path
    q4: Path
    slow: Path  # bigger, a few hundred tokens/s: long generations that a test can interrupt


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> TinyModels:
    """Tiny Llama 3.2 models in F16, Q8_0 and Q4_0, written once per test run."""
    folder = tmp_path_factory.mktemp("tiny-models")
    return TinyModels(
        f16=write_tiny_model(folder / "tiny-f16.gguf", quant="F16"),
        q8=write_tiny_model(folder / "tiny-q8.gguf", quant="Q8_0", shape=TinyShape(n_layer=3), seed=1),
        q4=write_tiny_model(folder / "tiny-q4.gguf", quant="Q4_0", seed=2),
        slow=write_tiny_model(
            folder / "slow-f16.gguf", shape=TinyShape(n_embd=512, n_layer=4, n_head=8, n_head_kv=2, n_ff=1536), seed=3
        ),
    )


def write_catalog(path: Path, models: dict[str, dict[str, object]]) -> Path:
    """A models.toml with one table per id."""
    lines = []
    for model_id, fields in models.items():
        lines.append(f'[models."{model_id}"]')
        for key, value in fields.items():
            lines.append(f"{key} = {value!r}" if not isinstance(value, str) else f'{key} = "{value}"')
        lines.append("")
    path.write_text("\n".join(lines))
    return path


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RunningServer:
    """A `pinaivu-local serve` child process."""

    process: subprocess.Popen[str]
    base_url: str
    data_dir: Path
    log_path: Path

    @property
    def v1(self) -> str:
        """The base_url the openai client takes."""
        return f"{self.base_url}/v1"

    def log(self) -> str:
        """What the server printed so far."""
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """SIGTERM, then wait (kill if it hangs)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_server(
    workdir: Path, *args: str, env: dict[str, str] | None = None, port: int | None = None
) -> RunningServer:
    """Start the real server as a child process (on `port`, or a free one) and wait until /health answers."""
    port = port or free_port()
    data_dir = workdir / "data"
    log_path = workdir / f"server-{port}.log"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PINAIVU_")}
    full_env.update(
        {"PINAIVU_DATA_DIR": str(data_dir), "PINAIVU_THREADS": "1", "PINAIVU_API_KEY": TEST_KEY, **(env or {})}
    )
    log_file = log_path.open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "pinaivu_local", "serve", "--port", str(port), *args],
        cwd=workdir,
        env=full_env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        text=True,
    )
    server = RunningServer(process, f"http://127.0.0.1:{port}", data_dir, log_path)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{server.log()}")
        try:
            httpx.get(f"{server.base_url}/health", timeout=1)
            return server
        except httpx.TransportError:
            time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"server did not start within {START_TIMEOUT_S}s:\n{server.log()}")


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., RunningServer]]:
    """Start servers for one test; all are stopped after it."""
    started: list[RunningServer] = []

    def factory(*args: str, env: dict[str, str] | None = None, workdir: Path | None = None) -> RunningServer:
        folder = workdir or tmp_path / f"srv{len(started)}"
        folder.mkdir(parents=True, exist_ok=True)
        server = start_server(folder, *args, env=env)
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()


@pytest.fixture
def two_models(tmp_path: Path, tiny_models: TinyModels) -> Path:
    """A catalog of this test's own: llama3.2:1b (F16) and llama3.2:3b (Q8_0), 512-token contexts."""
    return write_catalog(
        tmp_path / "models.toml",
        {
            "llama3.2:1b": {"path": str(tiny_models.f16), "n_ctx": 512},
            "llama3.2:3b": {"path": str(tiny_models.q8), "n_ctx": 512},
        },
    )


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_models: TinyModels) -> Iterator[RunningServer]:
    """One server for the run: tiny models registered as llama3.2:1b (F16) and llama3.2:3b (Q8_0)."""
    workdir = tmp_path_factory.mktemp("server")
    catalog = write_catalog(
        workdir / "models.toml",
        {
            "llama3.2:1b": {"path": str(tiny_models.f16), "n_ctx": 512, "parallel": 4},
            "llama3.2:3b": {"path": str(tiny_models.q8), "n_ctx": 512, "parallel": 4},
        },
    )
    running = start_server(workdir, "--models-file", str(catalog), env={"PINAIVU_MAX_QUEUE": "16"})
    yield running
    running.stop()


@pytest.fixture
def client(server: RunningServer):  # type: ignore[no-untyped-def]
    """The real openai client pointed at the `server` in scope: the session's, or a module's own."""
    import openai

    return openai.OpenAI(base_url=server.v1, api_key=TEST_KEY, max_retries=0, timeout=60)


@pytest.fixture
def hub() -> Iterator[Hub]:
    """A fake Hugging Face Hub on 127.0.0.1 (files, Range requests, dropped connections)."""
    with running_hub() as running:
        yield running


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """One real Postgres server for the whole run: its URL without a database."""
    with running_postgres(free_port()) as url:
        yield url


@pytest.fixture
def postgres_url(postgres_server: str, request: pytest.FixtureRequest) -> str:
    """A fresh, empty database for one test."""
    return create_database(postgres_server, f"t{abs(hash(request.node.nodeid)):x}_{time.monotonic_ns()}")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    """One real Redis server for the whole run."""
    with running_redis(free_port()) as url:
        yield url


@pytest.fixture
def redis_url(redis_server: str) -> str:
    """The Redis server, emptied for one test."""
    import redis

    client = redis.Redis.from_url(redis_server)
    client.flushall()
    client.close()
    return redis_server
