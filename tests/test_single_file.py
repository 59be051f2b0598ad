"""The one-file binary of `make dist`: built once per run, then run as a box without Python would run it.

Every run of the binary is `env -i HOME=<tmp> PATH=/usr/bin:/bin` (plus the variables a test names), from
a directory of its own: no virtual environment, no PYTHONPATH, no source tree.
PINAIVU_TEST_BINARY=dist/pinaivu-local-... tests a file built elsewhere (a CUDA build, say) instead.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import llama_cpp
import openai
import pytest

from pinaivu_local import __version__
from pinaivu_local.engine.host.repack import cpu_identity
from tests.helpers import AUTH, TEST_KEY, TinyModels, free_port, write_catalog
from tests.weights.hub import Hub

ROOT = Path(__file__).resolve().parent.parent
BUILD_TIMEOUT_S = 900  # PyInstaller takes two or three minutes on 2 cores
START_TIMEOUT_S = 60
# The build counts against the first test that asks for the binary.
pytestmark = pytest.mark.timeout(BUILD_TIMEOUT_S + 300)


def cannot_freeze() -> str | None:
    """Why PyInstaller cannot build (or this test cannot drive) the binary here; None when it can."""
    if sys.platform not in ("linux", "darwin"):
        return f"the single-file test drives a POSIX binary with env -i and SIGTERM; this is {sys.platform}"
    if sys.platform == "linux" and not sysconfig.get_config_var("Py_ENABLE_SHARED"):
        return "PyInstaller needs a Python built with --enable-shared (a libpython3.x.so); this one is static"
    return None


@pytest.fixture(scope="session")
def binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`make dist`'s build script, run once per test run into a temporary folder."""
    prebuilt = os.environ.get("PINAIVU_TEST_BINARY")
    if prebuilt:
        return Path(prebuilt).resolve()
    reason = cannot_freeze()
    if reason:
        pytest.skip(reason)
    out = tmp_path_factory.mktemp("dist")
    cmd = [sys.executable, str(ROOT / "packaging" / "build.py"), "--dist-dir", str(out), "--work-dir", str(out / "w")]
    try:
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"packaging/build.py took more than {BUILD_TIMEOUT_S}s")
    if done.returncode != 0:
        pytest.fail(f"packaging/build.py failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-6000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


def minimal_env(home: Path, **extra: str) -> dict[str, str]:
    """What `env -i HOME=... PATH=/usr/bin:/bin` leaves, plus `extra`."""
    return {"HOME": str(home), "PATH": "/usr/bin:/bin", **extra}


def run_binary(binary: Path, tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the binary to completion from an empty folder, HOME in tmp_path."""
    cwd = tmp_path / "cwd"
    cwd.mkdir(exist_ok=True)
    return subprocess.run(
        [str(binary), *args],
        cwd=cwd,
        env=minimal_env(tmp_path / "home", **env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_version_names_llama_cpp_build_and_backend(binary: Path, tmp_path: Path) -> None:
    result = run_binary(binary, tmp_path, "--version")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"pinaivu-local {__version__}"
    backend = binary.name.rsplit("-", 1)[1]
    assert lines[1].startswith("llama.cpp ") and f"llama-cpp-python {llama_cpp.__version__}" in lines[1]
    assert f"backend {backend} (ggml backends: " in lines[1]
    assert lines[2].startswith("libllama ") and lines[2].endswith("/llama_cpp/lib/libllama.so (bundled)")
    assert lines[3].startswith("libggml  ") and "/llama_cpp/lib/libggml" in lines[3]


def test_llama_cpp_lib_path_picks_another_build(binary: Path, tmp_path: Path) -> None:
    """LLAMA_CPP_LIB_PATH: libllama and the ggml it links come from there, none of the bundled copies."""
    other = tmp_path / "other-llama"
    shutil.copytree(Path(llama_cpp.__file__).parent / "lib", other)
    other = other.resolve()
    result = run_binary(binary, tmp_path, "--version", LLAMA_CPP_LIB_PATH=str(other))
    assert result.returncode == 0, result.stderr
    assert f"libllama {other}/libllama.so (LLAMA_CPP_LIB_PATH)" in result.stdout
    assert f"libggml  {other}/libggml" in result.stdout

    missing = run_binary(binary, tmp_path, "--version", LLAMA_CPP_LIB_PATH=str(tmp_path / "nowhere"))
    assert missing.returncode == 1
    assert f"llama.cpp cannot be loaded from LLAMA_CPP_LIB_PATH={tmp_path / 'nowhere'}" in missing.stderr


def test_doctor_and_the_repack_probe_child(binary: Path, tmp_path: Path) -> None:
    """doctor reports the bundled library; its repack probe is the binary run again as a child module."""
    result = run_binary(binary, tmp_path, "doctor", "--json")
    report = json.loads(result.stdout)
    assert result.returncode == 1  # no model is pulled: nothing can be served
    versions = report["versions"]
    assert versions["one_file_binary"] is True
    assert versions["llama_cpp_library_source"] == "bundled"
    assert versions["llama_cpp_library"].endswith("/llama_cpp/lib/libllama.so")
    assert report["data_dir"]["path"] == str(tmp_path / "home" / ".local" / "share" / "pinaivu-local")
    assert report["catalog"].endswith("/pinaivu_local/models.toml")  # the catalog shipped inside
    if not any(flag.startswith("amx") for flag in cpu_identity()[1]):
        # the probe ran as `<binary> --run-module pinaivu_local.engine.host.repack_probe`; a failed child reads False
        assert report["cpu"]["weight_repack"] is True
        cache = json.loads((tmp_path / "home" / ".local/share/pinaivu-local/repack-probe.json").read_text())
        assert cache["detail"] == "ok"


def test_models_pull_and_list(binary: Path, tmp_path: Path, hub: Hub, tiny_models: TinyModels) -> None:
    (tmp_path / "cwd").mkdir()
    source = hub.put("org/repo", "tiny.gguf", tiny_models.f16.read_bytes())
    write_catalog(tmp_path / "cwd" / "models.toml", {"llama3.2:1b": {"source": source}})
    pulled = run_binary(binary, tmp_path, "models", "pull", "llama3.2:1b", HF_ENDPOINT=hub.url)
    assert pulled.returncode == 0, pulled.stderr
    listed = run_binary(binary, tmp_path, "models", "list", "--json")
    (row,) = json.loads(listed.stdout)["models"]
    assert row["state"] == "ready"
    assert row["file"] == str(tmp_path / "home" / ".local/share/pinaivu-local/models/tiny.gguf")


@dataclass
class Served:
    process: subprocess.Popen[str]
    base_url: str
    log: Path


@pytest.fixture
def served(binary: Path, tmp_path: Path) -> Iterator[Served]:
    """`<binary> serve --test-models` on a free port, from an empty folder, until /health answers."""
    (tmp_path / "cwd").mkdir()
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    port = free_port()
    log = tmp_path / "server.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [str(binary), "serve", "--test-models", "--port", str(port)],
            cwd=tmp_path / "cwd",
            env=minimal_env(tmp_path / "home", PINAIVU_API_KEY=TEST_KEY, PINAIVU_THREADS="1", TMPDIR=str(tmp)),
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    running = Served(process, f"http://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert process.poll() is None, f"exited with {process.returncode}:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"no /health within {START_TIMEOUT_S}s:\n{log.read_text()}"
            try:
                if httpx.get(f"{running.base_url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        yield running
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_serve_test_models(served: Served, tmp_path: Path) -> None:
    """The whole round: models, a chat, a streamed chat, a tool call, the pages, then SIGTERM and a clean exit."""
    models = httpx.get(f"{served.base_url}/v1/models", headers=AUTH).json()["data"]
    assert {m["id"] for m in models} == {"llama3.2:1b", "llama3.2:3b", "nomic-embed-text:v1.5", "test-rerank"}
    assert all(m["test_model"] for m in models)

    client = openai.OpenAI(base_url=f"{served.base_url}/v1", api_key=TEST_KEY, max_retries=0, timeout=60)
    chat = client.chat.completions.create(
        model="llama3.2:1b", messages=[{"role": "user", "content": "Hello"}], max_tokens=8
    )
    assert chat.choices[0].message.content and chat.usage and chat.usage.completion_tokens > 0
    chunks = list(
        client.chat.completions.create(
            model="llama3.2:3b",
            messages=[{"role": "user", "content": "Count to five"}],
            max_tokens=8,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[-1].usage and chunks[-1].usage.completion_tokens > 0
    parameters = {"type": "object", "properties": {}, "additionalProperties": False}
    tool = {"type": "function", "function": {"name": "pick", "parameters": parameters}}
    forced = client.chat.completions.create(  # constrained decoding (llguidance) works in the file too
        model="llama3.2:1b", messages=[{"role": "user", "content": "Pick"}], tools=[tool], tool_choice="required"
    )
    calls = forced.choices[0].message.tool_calls
    assert calls and calls[0].function.name == "pick" and forced.choices[0].finish_reason == "tool_calls"

    for page in ("/explorer", "/dashboard", "/static/app.css", "/static/explorer.js"):
        assert httpx.get(served.base_url + page).status_code == 200, page

    data = tmp_path / "home" / ".local/share/pinaivu-local"
    assert len(list((data / "test-models").glob("*.gguf"))) == 4  # generated by the tiny-model writers inside

    served.process.send_signal(signal.SIGTERM)
    # uvicorn shuts down, then re-raises SIGTERM on itself, as the installed command does (exit status 143)
    assert served.process.wait(timeout=30) in (0, -signal.SIGTERM), served.log.read_text()
    log = served.log.read_text()
    assert "Application shutdown complete." in log and "Traceback" not in log
    assert not list((tmp_path / "tmp").glob("_MEI*"))  # where the binary unpacked itself: removed again
