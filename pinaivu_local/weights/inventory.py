"""The state of each catalog model's file on disk, and removing pulled files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pinaivu_local.catalog import ModelSpec
from pinaivu_local.errors import ModelFileError, PullError
from pinaivu_local.weights import partial
from pinaivu_local.weights.checksum import read_record, record_path
from pinaivu_local.weights.gguf_info import GGUFInfo, read_gguf_info

FileState = Literal["ready", "missing", "invalid"]


@dataclass(frozen=True)
class ModelFile:
    """One catalog model's file: present and sound, absent, or unusable (and why)."""

    spec: ModelSpec
    state: FileState
    size_bytes: int | None
    info: GGUFInfo | None
    problem: str | None
    sha256: str | None  # as recorded when it was pulled

    def memory_bytes(self) -> int | None:
        """Weights plus the KV cache of the catalog's context: what loading it will take."""
        if self.info is None or self.size_bytes is None:
            return None
        kv = self.info.kv_cache_bytes(self.spec.n_ctx)
        return None if kv is None else self.size_bytes + kv


def inspect(spec: ModelSpec) -> ModelFile:
    """Look at a model's file without loading it: header, size, truncation."""
    try:
        info = read_gguf_info(spec.file)
    except ModelFileError as exc:
        if not spec.file.exists():
            return ModelFile(spec, "missing", None, None, None, None)
        return ModelFile(spec, "invalid", _size(spec.file), None, exc.message, None)
    if info.truncated:
        problem = f"{spec.file}: truncated ({info.file_bytes} of {info.expected_bytes} bytes); pull it again"
        return ModelFile(spec, "invalid", info.file_bytes, info, problem, None)
    return ModelFile(spec, "ready", info.file_bytes, info, None, read_record(spec.file))


def remove(spec: ModelSpec, models_dir: Path) -> list[Path]:
    """Delete a pulled file with its hash record and any partial download; return what was removed."""
    if not spec.file.is_relative_to(models_dir.resolve()):
        raise PullError(f"{spec.id}: {spec.file} was not pulled into {models_dir}; delete it yourself if you mean to")
    part = spec.file.with_name(spec.file.name + ".part")
    candidates = [spec.file, record_path(spec.file), part, partial.record_path(part)]
    removed = []
    for path in candidates:
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise PullError(f"{spec.id}: cannot remove {path} ({exc.strerror})") from None
        removed.append(path)
    if not removed:
        raise PullError(f"{spec.id}: nothing to remove, {spec.file} is not there")
    return removed


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None
