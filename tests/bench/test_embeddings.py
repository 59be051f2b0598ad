"""`pinaivu-local bench --embeddings`: the make bench row, run on the tiny BERT model (measures nothing here)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from click.testing import CliRunner

from pinaivu_local.bench.embeddings import EmbeddingsRate
from pinaivu_local.cli import main


def test_the_embeddings_row_runs_and_reports_its_shape(tmp_path: Path) -> None:
    args = ["bench", "--embeddings", "2", "--tiny", "--threads", "1", "--work-dir", str(tmp_path)]
    llama_server = os.environ.get("PINAIVU_BENCH_LLAMA_SERVER")  # measured too where a build is given
    result = CliRunner().invoke(main, args, env={"PINAIVU_BENCH_LLAMA_SERVER": llama_server or ""})
    assert result.exit_code == 0, result.output
    assert "2 requests of 64 inputs each" in result.output and "pinaivu-local" in result.output
    data = json.loads((tmp_path / "embeddings" / "bench-embeddings.json").read_text())
    assert data["batch"] == 64 and data["rounds"] == 2 and data["threads"] == 1
    assert data["embeddings_per_s"]["pinaivu-local"] > 0
    if llama_server:
        assert data["embeddings_per_s"]["llama-server"] > 0 and data["ratio"] > 0
        assert "ours / theirs" in result.output
    else:
        assert data["embeddings_per_s"]["llama-server"] is None and data["ratio"] is None
        assert "not measured" in result.output


def test_the_table_and_the_ratio() -> None:
    rate = EmbeddingsRate("m", rounds=3, threads=2, ours=300.0, llama_server=200.0)
    assert rate.ratio == 1.5
    assert rate.render().splitlines()[-1].split() == ["ours", "/", "theirs", "1.50"]
    assert rate.as_json()["embeddings_per_s"] == {"pinaivu-local": 300.0, "llama-server": 200.0}
