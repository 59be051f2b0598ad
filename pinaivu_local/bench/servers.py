"""The two servers under test as child processes on free loopback ports: start, wait, measure, stop."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from pinaivu_local.children import module_command
from pinaivu_local.errors import BenchError
from pinaivu_local.settings import STREAM_INTERVAL_MS

READY_TIMEOUT_S = 600  # a 1B model loads in seconds; the repack probe and a cold disk take longer
STOP_TIMEOUT_S = 30


@dataclass(frozen=True)
class ServerSetup:
    """What both servers are given, so that they run the same model the same way."""

    model: Path
    model_id: str
    n_ctx: int
    parallel: int
    threads: int
    weight_repack: bool
    gpu_layers: int = 0  # layers offloaded to the GPU; -1: all of them
    stream_interval_ms: float = STREAM_INTERVAL_MS  # ours only: how often a stream's new text goes out
    # Our server wants a key (imported as its admin key); llama_cpp.server ignores the header.
    api_key: str = field(default_factory=lambda: "sk-pnv-bench-" + secrets.token_urlsafe(24))


@dataclass
class ServerProcess:
    """One server child process and where its output goes."""

    name: str
    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    def rss_bytes(self) -> tuple[int, int]:
        """(resident now, peak resident) from /proc; (0, 0) where /proc is unavailable."""
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text()
        except OSError:
            return 0, 0
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)

        def kib(key: str) -> int:
            return int(fields.get(key, "0 kB").split()[0]) * 1024

        return kib("VmRSS"), kib("VmHWM")

    def log_tail(self, n_chars: int = 3000) -> str:
        """The end of what the server printed."""
        try:
            return self.log_path.read_text(errors="replace")[-n_chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not exit in time."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_ours(setup: ServerSetup, work_dir: Path) -> ServerProcess:
    """pinaivu-local (`python -m pinaivu_local serve`), ready to answer."""
    catalog = work_dir / "bench-models.toml"
    catalog.write_text(our_catalog(setup))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PINAIVU_")}
    env.update(
        PINAIVU_DATA_DIR=str(work_dir / "data"),
        PINAIVU_THREADS=str(setup.threads),
        PINAIVU_WEIGHT_REPACK="on" if setup.weight_repack else "off",
        PINAIVU_LOG_LEVEL="warning",
        PINAIVU_STREAM_INTERVAL_MS=str(setup.stream_interval_ms),
        PINAIVU_API_KEY=setup.api_key,
        # limits must not shape the measurement
        PINAIVU_DEFAULT_RPM=str(10**9),
        PINAIVU_DEFAULT_TPM=str(10**12),
    )
    cmd = [*module_command("pinaivu_local"), "serve", "--port", str(port), "--models-file", str(catalog)]
    server = spawn("pinaivu-local", cmd, env, port, work_dir)
    wait_ready(server, "/health", lambda body: _our_model_ready(body, setup.model_id))
    return server


def our_catalog(setup: ServerSetup) -> str:
    """The models file our server is started with: the one model, set up as the peers are."""
    return (
        f'[models."{setup.model_id}"]\npath = "{setup.model}"\nn_ctx = {setup.n_ctx}\n'
        f"n_gpu_layers = {setup.gpu_layers}\nparallel = {setup.parallel}\n"
    )


def start_llama_cpp_server(setup: ServerSetup, work_dir: Path) -> ServerProcess:
    """llama_cpp.server (`python -m llama_cpp.server` through the repack launcher), ready to answer."""
    port = free_port()
    cmd = [
        *module_command("pinaivu_local.bench.llama_cpp_launcher"),
        "--weight-repack",
        "on" if setup.weight_repack else "off",
        "--",
        "--model",
        str(setup.model),
        "--model_alias",
        setup.model_id,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        str(setup.n_ctx),
        "--n_gpu_layers",
        str(setup.gpu_layers),
        "--n_threads",
        str(setup.threads),
        "--n_threads_batch",
        str(setup.threads),
        # Its defaults would cut a running stream when the next request arrives, compute logits
        # for every prompt token and turn flash attention off; ours does none of that.
        "--interrupt_requests",
        "False",
        "--logits_all",
        "False",
        "--flash_attn",
        "True",
        "--verbose",
        "False",
    ]
    return _start_peer("llama_cpp.server", cmd, port, setup, work_dir)


def start_llama_server(binary: Path, setup: ServerSetup, work_dir: Path) -> ServerProcess:
    """llama.cpp's C++ llama-server (a binary the user built), as the guide ran it: -np slots, one cache."""
    port = free_port()
    return _start_peer("llama-server", llama_server_command(binary, setup, port), port, setup, work_dir)


def llama_server_command(binary: Path, setup: ServerSetup, port: int) -> list[str]:
    """llama-server's command line for `setup` on `port`."""
    return [
        str(binary),
        "--model",
        str(setup.model),
        "--alias",
        setup.model_id,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--ctx-size",
        str(setup.n_ctx),
        "--parallel",
        str(setup.parallel),
        "--kv-unified",
        "--threads",
        str(setup.threads),
        "--threads-batch",
        str(setup.threads),
        "--n-gpu-layers",
        "all" if setup.gpu_layers < 0 else str(setup.gpu_layers),
        "--flash-attn",
        "on",
        *([] if setup.weight_repack else ["--no-repack"]),
    ]


def _start_peer(name: str, cmd: list[str], port: int, setup: ServerSetup, work_dir: Path) -> ServerProcess:
    """A peer server, ready once its /v1/models lists the model."""
    server = spawn(name, cmd, dict(os.environ), port, work_dir)
    wait_ready(server, "/v1/models", lambda body: setup.model_id in str(body))
    return server


def spawn(name: str, cmd: list[str], env: dict[str, str], port: int, work_dir: Path) -> ServerProcess:
    """Start a server child process, its output in a log file of the work dir."""
    log_path = work_dir / f"{name.replace('.', '-')}-{port}.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(cmd, env=env, cwd=work_dir, stdout=log_file, stderr=subprocess.STDOUT)
    return ServerProcess(name, process, f"http://127.0.0.1:{port}", log_path)


def _our_model_ready(body: object, model_id: str) -> bool:
    models = body.get("models", []) if isinstance(body, dict) else []
    return any(m.get("id") == model_id and m.get("state") == "ready" for m in models)


def wait_ready(server: ServerProcess, path: str, ready: Callable[[Any], bool]) -> None:
    """Poll `path` until `ready(json)` holds; on any failure the server is stopped."""
    try:
        _poll_ready(server, path, ready)
    except BaseException:
        server.stop()
        raise


def _poll_ready(server: ServerProcess, path: str, ready: Callable[[Any], bool]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise BenchError(f"{server.name} exited with status {server.process.returncode}:\n{server.log_tail()}")
        try:
            response = httpx.get(server.base_url + path, timeout=5)
            if response.status_code == 200 and ready(response.json()):
                return
        except (httpx.TransportError, ValueError):
            pass
        time.sleep(0.25)
    raise BenchError(f"{server.name} was not ready within {READY_TIMEOUT_S}s:\n{server.log_tail()}")
