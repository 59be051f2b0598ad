"""File states of catalog models, and removing pulled files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pinaivu_local.catalog import ModelSpec
from pinaivu_local.errors import PullError
from pinaivu_local.weights.checksum import write_record
from pinaivu_local.weights.inventory import inspect, remove
from tests.helpers import TinyModels


def spec(file: Path) -> ModelSpec:
    return ModelSpec("m", "hf://o/r/x.gguf", file, n_ctx=512, n_gpu_layers=-1, parallel=1)


def test_states(tmp_path: Path, tiny_models: TinyModels) -> None:
    ready = inspect(spec(tiny_models.q8))
    assert ready.state == "ready" and ready.info is not None and ready.info.quantization == "Q8_0"
    assert ready.memory_bytes() == tiny_models.q8.stat().st_size + ready.info.kv_cache_bytes(512)  # type: ignore[operator]
    assert inspect(spec(tmp_path / "none.gguf")).state == "missing"
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(tiny_models.f16.read_bytes()[:-10])
    broken = inspect(spec(cut))
    assert broken.state == "invalid" and broken.problem is not None and "truncated" in broken.problem


def test_remove_takes_the_file_its_record_and_its_part_with_its_record(tmp_path: Path, tiny_models: TinyModels) -> None:
    models = tmp_path / "models"
    models.mkdir()
    file = models / "x.gguf"
    shutil.copy(tiny_models.f16, file)
    write_record(file, "0" * 64)
    (models / "x.gguf.part").write_bytes(b"GGUF")
    (models / "x.gguf.part.json").write_text("{}")
    removed = remove(spec(file), models)
    assert removed == [file, models / "x.gguf.sha256", models / "x.gguf.part", models / "x.gguf.part.json"]
    assert list(models.iterdir()) == []
    with pytest.raises(PullError, match="nothing to remove"):
        remove(spec(file), models)


def test_remove_leaves_files_outside_the_data_dir(tmp_path: Path, tiny_models: TinyModels) -> None:
    with pytest.raises(PullError, match="was not pulled into"):
        remove(spec(tiny_models.f16), tmp_path / "models")
    assert tiny_models.f16.exists()
