"""SHA-256 of model files, and the `<file>.sha256` record kept next to each pulled file."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

CHUNK = 1 << 20


def sha256_file(path: Path, on_chunk: Callable[[int], None] | None = None) -> str:
    """The hex SHA-256 of a file, read in chunks; `on_chunk(n)` after each."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            if on_chunk:
                on_chunk(len(chunk))
    return digest.hexdigest()


def record_path(model_file: Path) -> Path:
    """Where the hash of `model_file` is recorded (sha256sum's format, so `sha256sum -c` checks it)."""
    return model_file.with_name(model_file.name + ".sha256")


def write_record(model_file: Path, sha256: str) -> None:
    """Record the hash a pulled file had when it was pulled."""
    record_path(model_file).write_text(f"{sha256}  {model_file.name}\n")


def read_record(model_file: Path) -> str | None:
    """The recorded hash, or None when there is none (or it is unreadable)."""
    try:
        first = record_path(model_file).read_text().split()
    except OSError:
        return None
    return first[0].lower() if first and len(first[0]) == 64 else None
