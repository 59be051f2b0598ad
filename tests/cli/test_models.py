"""`models list`, `pull` and `rm`: in process and through the real entry point, against a hub on 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from pinaivu_local.cli import main
from pinaivu_local.sizes import human_bytes
from pinaivu_local.weights.partial import PartRecord, Version, save
from tests.helpers import TinyModels, write_catalog
from tests.weights.hub import Hub
from tests.weights.ollama_store import add_to_ollama_store


def cli(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m pinaivu_local ARGS`: data dir and catalog in tmp_path, nothing else from the environment."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PINAIVU_", "HF_", "OLLAMA_"))}
    clean.update(
        PINAIVU_DATA_DIR=str(tmp_path / "data"),
        PINAIVU_MODELS_FILE=str(tmp_path / "models.toml"),
        PINAIVU_WEIGHT_REPACK="off",
        **env,
    )
    return subprocess.run(
        [sys.executable, "-m", "pinaivu_local", *args], capture_output=True, text=True, env=clean, timeout=120
    )


def test_pull_list_and_rm(tmp_path: Path, hub: Hub, tiny_models: TinyModels) -> None:
    data = tiny_models.f16.read_bytes()
    write_catalog(tmp_path / "models.toml", {"llama3.2:1b": {"source": hub.put("org/repo", "tiny.gguf", data)}})
    file = tmp_path / "data" / "models" / "tiny.gguf"
    pulled = cli(tmp_path, "models", "pull", "llama3.2:1b", HF_ENDPOINT=hub.url)
    assert pulled.returncode == 0, pulled.stderr
    sha = hashlib.sha256(data).hexdigest()
    size = human_bytes(len(data))
    assert pulled.stdout == f"llama3.2:1b: downloaded {file} ({size}, sha256 {sha})\n"
    kib = f"{len(data) / 1024:.1f}"
    assert "llama3.2:1b" in pulled.stderr and f"{kib}/{kib} KiB" in pulled.stderr  # the progress bar's last state
    listed = cli(tmp_path, "models", "list")
    assert f"llama3.2:1b      ready    F16      {size:>9}  8192   all " in listed.stdout
    removed = cli(tmp_path, "models", "rm", "llama3.2:1b")
    assert removed.returncode == 0
    assert removed.stdout.splitlines() == [f"removed {file}", f"removed {file}.sha256"]
    again = cli(tmp_path, "models", "rm", "llama3.2:1b")
    assert again.returncode == 1
    assert again.stderr == f"Error: llama3.2:1b: nothing to remove, {file} is not there\n"


def test_pull_failures_are_one_line_each(tmp_path: Path, hub: Hub, tiny_models: TinyModels) -> None:
    write_catalog(
        tmp_path / "models.toml",
        {
            "llama3.2:1b": {"source": hub.put("org/repo", "a.gguf", tiny_models.f16.read_bytes()), "sha256": "0" * 64},
            "llama3.2:3b": {"source": "hf://org/repo/none.gguf"},
        },
    )
    result = cli(tmp_path, "models", "pull", "--all", HF_ENDPOINT=hub.url)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert errors == [
        f"Error: llama3.2:1b: SHA-256 mismatch: got {hashlib.sha256(tiny_models.f16.read_bytes()).hexdigest()}, "
        f"the catalog pins {'0' * 64}; the download was deleted",
        f"Error: llama3.2:3b: not found (HTTP 404): {hub.url}/org/repo/resolve/main/none.gguf",
    ]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data" / "models" / "a.gguf").exists()
    offline = cli(tmp_path, "models", "pull", "llama3.2:3b", HF_ENDPOINT=hub.url, HF_HUB_OFFLINE="1")
    assert offline.returncode == 1
    assert offline.stderr == "Error: llama3.2:3b: HF_HUB_OFFLINE is set, so hf://org/repo/none.gguf is not downloaded\n"
    typo = cli(tmp_path, "models", "pull", "llama3.2-1b")
    assert typo.returncode == 1
    assert typo.stderr == f"Error: no model 'llama3.2-1b' in {tmp_path / 'models.toml'}; did you mean llama3.2:1b?\n"
    assert cli(tmp_path, "models", "pull").returncode == 2


def test_pull_says_in_one_line_when_a_partial_download_is_of_an_older_upload(
    tmp_path: Path, hub: Hub, tiny_models: TinyModels
) -> None:
    old, new = tiny_models.q8.read_bytes(), tiny_models.f16.read_bytes()
    source = hub.put("org/repo", "tiny.gguf", old)
    path = "/org/repo/resolve/main/tiny.gguf"
    part = tmp_path / "data" / "models" / "tiny.gguf.part"  # what an interrupted pull of the old upload left
    part.parent.mkdir(parents=True)
    part.write_bytes(old[:1000])
    version = Version(etag=hub.validator_headers(path)["ETag"], last_modified=None, linked_etag=None, size=len(old))
    save(part, PartRecord(hub.url + path, version))
    hub.put("org/repo", "tiny.gguf", new)
    write_catalog(tmp_path / "models.toml", {"llama3.2:1b": {"source": source}})
    pulled = cli(tmp_path, "models", "pull", "llama3.2:1b", HF_ENDPOINT=hub.url)
    assert pulled.returncode == 0, pulled.stderr
    note = f"llama3.2:1b: the file changed on {hub.url.removeprefix('http://')} since tiny.gguf.part was fetched; "
    assert f"{note}starting over\n" in pulled.stderr
    assert f"sha256 {hashlib.sha256(new).hexdigest()})" in pulled.stdout
    assert (tmp_path / "data" / "models" / "tiny.gguf").read_bytes() == new
    assert [(r.range, r.if_range) for r in hub.requests] == [("bytes=1000-", version.etag)]
    assert sorted(p.name for p in part.parent.iterdir()) == ["tiny.gguf", "tiny.gguf.sha256"]


def test_pull_from_ollama(tmp_path: Path, tiny_models: TinyModels) -> None:
    write_catalog(tmp_path / "models.toml", {"llama3.2:1b": {"source": "hf://org/repo/Llama-3.2-1B.gguf"}})
    digest = add_to_ollama_store(tmp_path / "ollama", "llama3.2", "1b", tiny_models.q8.read_bytes())
    result = cli(tmp_path, "models", "pull", "--from-ollama", "llama3.2:1b", OLLAMA_MODELS=str(tmp_path / "ollama"))
    assert result.returncode == 0, result.stderr
    file = tmp_path / "data" / "models" / "Llama-3.2-1B.gguf"
    assert result.stdout.startswith(f"llama3.2:1b: linked {file} (") and digest in result.stdout


def test_models_list_json(tmp_path: Path, tiny_models: TinyModels) -> None:
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"<html>not a model</html>")
    catalog = write_catalog(
        tmp_path / "models.toml",
        {
            "present": {"path": str(tiny_models.f16)},
            "absent": {"source": "hf://org/repo/absent-Q4_K_M.gguf"},
            "broken": {"path": "junk.gguf"},
        },
    )
    result = CliRunner().invoke(
        main, ["models", "list", "--json", "--models-file", str(catalog), "--data-dir", str(tmp_path / "d")]
    )
    assert result.exit_code == 0, result.output
    rows = {row["id"]: row for row in json.loads(result.output)["models"]}
    assert rows["present"]["state"] == "ready" and rows["present"]["size_bytes"] == tiny_models.f16.stat().st_size
    assert rows["present"]["quantization"] == "F16"
    assert rows["absent"]["state"] == "missing"
    assert rows["absent"]["file"] == str(tmp_path / "d" / "models" / "absent-Q4_K_M.gguf")
    assert rows["absent"]["fetch_command"] == "pinaivu-local models pull absent"
    assert rows["broken"]["state"] == "invalid"
    assert "not a GGUF file" in rows["broken"]["problem"]


def test_models_list_text(tmp_path: Path) -> None:
    catalog = write_catalog(tmp_path / "models.toml", {"llama3.2:1b": {"source": "hf://o/r/f.gguf"}})
    result = CliRunner().invoke(main, ["models", "list", "--models-file", str(catalog), "--data-dir", str(tmp_path)])
    assert result.exit_code == 0
    assert "llama3.2:1b" in result.output and "missing" in result.output
    assert "fetch: pinaivu-local models pull llama3.2:1b" in result.output
