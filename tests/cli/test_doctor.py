"""`pinaivu-local doctor`: its JSON on a tiny catalog, and its exit status."""

from __future__ import annotations

import json
from pathlib import Path

import llama_cpp
from click.testing import CliRunner, Result

from pinaivu_local.cli import main
from pinaivu_local.weights.gguf_info import read_gguf_info
from tests.helpers import TinyModels, write_catalog


def doctor(tmp_path: Path, *args: str, data_dir: Path | None = None) -> Result:
    env = {"PINAIVU_WEIGHT_REPACK": "off", "PINAIVU_N_GPU_LAYERS": None}
    where = ["--models-file", str(tmp_path / "models.toml"), "--data-dir", str(data_dir or tmp_path / "d")]
    return CliRunner().invoke(main, ["doctor", *where, *args], env=env)


def test_json_with_a_ready_and_a_missing_model(tmp_path: Path, tiny_models: TinyModels) -> None:
    write_catalog(
        tmp_path / "models.toml",
        {"llama3.2:1b": {"path": str(tiny_models.q8), "n_ctx": 1024}, "llama3.2:3b": {"source": "hf://o/r/x.gguf"}},
    )
    result = doctor(tmp_path, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["ok"] is True
    assert report["versions"]["llama_cpp_python"] == llama_cpp.__version__
    assert report["versions"]["llama_cpp_library"] == str(Path(llama_cpp.llama_cpp._lib._name).resolve())
    assert report["versions"]["llama_cpp_library_source"] == "llama-cpp-python"
    assert report["versions"]["one_file_binary"] is False
    assert isinstance(report["gpu"]["offload_supported"], bool)
    assert any(d["type"] == "cpu" for d in report["gpu"]["devices"])
    assert {"avx2", "avx512", "amx", "weight_repack"} <= set(report["cpu"])
    assert report["data_dir"]["writable"] is True
    one, three = report["models"]
    info = read_gguf_info(tiny_models.q8)
    assert one["state"] == "ready" and one["quantization"] == "Q8_0"
    assert one["memory_bytes"] == tiny_models.q8.stat().st_size + info.kv_cache_bytes(1024)
    assert three["state"] == "missing" and three["fetch_command"] == "pinaivu-local models pull llama3.2:3b"
    assert {"level": "warning", "message": three_warning(three)} in report["problems"]


def three_warning(row: dict[str, str]) -> str:
    return f"llama3.2:3b: no file at {row['file']}; fetch it with `pinaivu-local models pull llama3.2:3b`"


def test_no_loadable_model_blocks_serving(tmp_path: Path) -> None:
    write_catalog(tmp_path / "models.toml", {"llama3.2:1b": {"source": "hf://o/r/x.gguf"}})
    result = doctor(tmp_path)
    assert result.exit_code == 1
    assert "error            no catalog model can load" in result.output
    assert result.output.rstrip().endswith("NOT ok: the errors above block serving")


def test_unwritable_data_dir_and_broken_catalog(tmp_path: Path, tiny_models: TinyModels) -> None:
    write_catalog(tmp_path / "models.toml", {"llama3.2:1b": {"path": str(tiny_models.f16)}})
    blocker = tmp_path / "file"
    blocker.write_text("a file where a directory should be")
    result = doctor(tmp_path, "--json", data_dir=blocker / "data")
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert report["data_dir"]["writable"] is False
    errors = [p["message"] for p in report["problems"] if p["level"] == "error"]
    assert errors == [f"data directory {blocker / 'data'} is not writable: Not a directory"]
    (tmp_path / "models.toml").write_text("[models")
    broken = json.loads(doctor(tmp_path, "--json").output)
    assert broken["ok"] is False and "not valid TOML" in broken["problems"][0]["message"]


def test_database_health(tmp_path: Path) -> None:
    """doctor reads the database without changing it; a foreign file is an error."""
    from pinaivu_local.cli.doctor_checks import _database
    from pinaivu_local.storage.database import Database, schema_version

    path = tmp_path / "pinaivu.db"
    assert _database(path) == {
        "path": str(path),
        "exists": False,
        "problem": None,
        "note": "created at the first start",
    }
    Database(path).close()
    row = _database(path)
    assert row["problem"] is None and row["schema_version"] == schema_version() and row["api_keys"] == 0
    path.write_bytes(b"garbage" * 1000)
    assert "not a usable SQLite database" in _database(path)["problem"]


def test_an_identity_other_users_may_read_blocks_serving(tmp_path: Path, tiny_models: TinyModels) -> None:
    """The server refuses to start with it (receipts/identity.py), so doctor says so, with the fix."""
    from pinaivu_local.receipts.identity import KEY_FILE, load_or_create

    write_catalog(tmp_path / "models.toml", {"llama3.2:1b": {"path": str(tiny_models.f16)}})
    key = tmp_path / "d" / "identity" / KEY_FILE
    load_or_create(key.parent)
    key.chmod(0o644)
    result = doctor(tmp_path, "--json")
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert f"run `chmod 600 {key}`" in report["node"]["problem"]
    assert [p["message"] for p in report["problems"] if p["level"] == "error"] == [
        f"node identity: {report['node']['problem']}"
    ]
