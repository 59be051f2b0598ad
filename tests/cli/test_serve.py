"""`serve`: one-line errors for bad input, missing and broken models, `--test-models` and `--pull`."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import openai
import pytest

from pinaivu_local.engine.host.devices import supports_gpu_offload
from tests.helpers import AUTH, TEST_KEY, RunningServer, TinyModels, write_catalog
from tests.weights.hub import Hub


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The real entry point in a child process (`python -m pinaivu_local`)."""
    return subprocess.run(
        [sys.executable, "-m", "pinaivu_local", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=120
    )


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("[models.x\n", "not valid TOML"),
        ('[models."a"]\nn_ctx = "big"\n', "n_ctx"),
        ('[models."a"]\npath = "a.gguf"\nflavour = 1\n', "flavour"),
        ('[models."a"]\nn_ctx = 8192\n', "needs a `source` or a `path`"),
        ("title = 'x'\n", "unknown top-level key"),
        ("", "no models"),
    ],
)
def test_serve_with_a_malformed_catalog_is_one_line(tmp_path: Path, content: str, needle: str) -> None:
    catalog = tmp_path / "models.toml"
    catalog.write_text(content)
    result = run_cli("serve", "--models-file", str(catalog), "--data-dir", str(tmp_path / "d"), "--port", "1")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ") and str(catalog) in lines[0] and needle in lines[0]
    assert "Traceback" not in result.stderr


def test_bad_setting_is_one_line(tmp_path: Path) -> None:
    result = run_cli("serve", "--data-dir", str(tmp_path), env={"PINAIVU_PORT": "eighty", "PATH": ""})
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "PINAIVU_PORT" in result.stderr and "Traceback" not in result.stderr


def test_bad_cli_argument(tmp_path: Path) -> None:
    result = run_cli("serve", "--port", "http")
    assert result.returncode == 2
    assert "Invalid value for '--port'" in result.stderr and "Traceback" not in result.stderr


def test_port_in_use_is_one_line(server: RunningServer, tmp_path: Path) -> None:
    port = server.base_url.rsplit(":", 1)[1]
    result = run_cli("serve", "--test-models", "--port", port, "--data-dir", str(tmp_path))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"Error: cannot listen on 127.0.0.1:{port} (Address already in use); "
        "is another server running? Choose one with --port."
    ]


def test_missing_and_broken_models_do_not_stop_the_server(
    server_factory: Callable[..., RunningServer], tiny_models: TinyModels, tmp_path: Path
) -> None:
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(tiny_models.f16.read_bytes()[:5000])
    catalog = write_catalog(
        tmp_path / "models.toml",
        {
            "llama3.2:1b": {"path": str(tiny_models.f16), "n_ctx": 256},
            "llama3.2:3b": {"source": "hf://bartowski/Llama-3.2-3B-Instruct-GGUF/Llama-3.2-3B-Instruct-Q4_K_M.gguf"},
            "broken": {"path": str(truncated)},
        },
    )
    server = server_factory("--models-file", str(catalog))
    client = openai.OpenAI(base_url=server.v1, api_key=TEST_KEY, max_retries=0)
    assert [m.id for m in client.models.list()] == ["llama3.2:1b"]
    health = httpx.get(f"{server.base_url}/health", headers=AUTH, timeout=10).json()  # admin: paths shown
    assert health["status"] == "degraded"
    states = {m["id"]: m for m in health["models"]}
    assert states["llama3.2:3b"]["state"] == "missing"
    assert states["llama3.2:3b"]["fetch_command"] == "pinaivu-local models pull llama3.2:3b"
    assert states["broken"]["state"] == "failed" and str(truncated) in states["broken"]["detail"]
    anonymous = {m["id"]: m for m in httpx.get(f"{server.base_url}/health", timeout=10).json()["models"]}
    assert anonymous["broken"]["detail"].startswith("truncated.gguf: ") and "file" not in anonymous["broken"]
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="llama3.2:3b", messages=[{"role": "user", "content": "hi"}])
    assert "Fetch it with: pinaivu-local models pull llama3.2:3b" in str(caught.value.body)
    assert "llama3.2:1b" in str(caught.value.body)
    assert client.chat.completions.create(
        model="llama3.2:1b", messages=[{"role": "user", "content": "hi"}], max_tokens=2
    ).choices
    log = server.log()
    assert "Fetch them with" in log and "Llama-3.2-3B-Instruct-Q4_K_M.gguf" in log
    assert "pinaivu-local models pull llama3.2:3b" in log
    assert "Traceback" not in log


def test_no_weights_at_all_points_to_test_models(server_factory: Callable[..., RunningServer], tmp_path: Path) -> None:
    catalog = write_catalog(tmp_path / "models.toml", {"llama3.2:1b": {"source": "hf://o/r/none.gguf"}})
    server = server_factory("--models-file", str(catalog))
    assert httpx.get(f"{server.base_url}/health", timeout=10).status_code == 503
    assert "--test-models" in server.log()


def test_test_models_serve_the_catalog_ids(server_factory: Callable[..., RunningServer], tmp_path: Path) -> None:
    catalog = Path(__file__).parents[2] / "models.toml"
    server = server_factory("--test-models", "--models-file", str(catalog))
    client = openai.OpenAI(base_url=server.v1, api_key=TEST_KEY, max_retries=0)
    models = httpx.get(f"{server.v1}/models", headers=AUTH, timeout=10).json()["data"]
    assert [(m["id"], m["test_model"]) for m in models] == [
        ("llama3.2:1b", True),
        ("llama3.2:3b", True),
        ("nomic-embed-text:v1.5", True),
        ("test-rerank", True),  # the catalog has no reranker: a tiny one serves /v1/rerank
    ]
    assert [m["capabilities"] for m in models][2:] == [["embeddings"], ["rerank"]]
    assert all(m["test_model"] for m in httpx.get(f"{server.base_url}/health", timeout=10).json()["models"])
    embedded = client.embeddings.create(model="nomic-embed-text:v1.5", input=["Hello", "world"])
    assert len(embedded.data) == 2
    for model in ("llama3.2:1b", "llama3.2:3b"):
        out = client.chat.completions.with_raw_response.create(
            model=model, messages=[{"role": "user", "content": "Hello"}], max_tokens=4
        )
        assert out.headers["x-request-id"].startswith("req_")
        assert out.parse().usage is not None


def test_serve_pull_pulls_then_serves(
    server_factory: Callable[..., RunningServer], tmp_path: Path, hub: Hub, tiny_models: TinyModels
) -> None:
    catalog = write_catalog(
        tmp_path / "models.toml",
        {
            "llama3.2:1b": {"source": hub.put("org/repo", "tiny.gguf", tiny_models.f16.read_bytes()), "n_ctx": 256},
            "llama3.2:3b": {"source": "hf://org/repo/absent.gguf", "n_ctx": 256},
        },
    )
    server = server_factory("--pull", "--models-file", str(catalog), env={"HF_ENDPOINT": hub.url})
    client = openai.OpenAI(base_url=server.v1, api_key=TEST_KEY, max_retries=0)
    answer = client.chat.completions.create(
        model="llama3.2:1b", messages=[{"role": "user", "content": "hi"}], max_tokens=2
    )
    assert answer.choices[0].message.content is not None
    health = {m["id"]: m for m in httpx.get(f"{server.base_url}/health", timeout=10).json()["models"]}
    assert health["llama3.2:3b"]["state"] == "missing"
    log = server.log()
    assert f"llama3.2:1b: downloaded {server.data_dir / 'models' / 'tiny.gguf'}" in log
    assert log.count("Error: ") == 1 and "Error: llama3.2:3b: not found (HTTP 404)" in log
    if not supports_gpu_offload():
        assert log.count("this llama.cpp build has no GPU offload") == 1
    assert "Traceback" not in log
