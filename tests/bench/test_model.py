"""The benchmark model: generated once, then cached."""

from __future__ import annotations

from pathlib import Path

from pinaivu_local.bench.model import ensure_bench_model


def test_tiny_bench_model_is_generated_once(tmp_path: Path) -> None:
    path = ensure_bench_model(tmp_path, tiny=True)
    mtime = path.stat().st_mtime_ns
    assert ensure_bench_model(tmp_path, tiny=True) == path
    assert path.stat().st_mtime_ns == mtime
