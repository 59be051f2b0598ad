"""`pinaivu-local bench --gateway`: a node and a gateway in front of it, both paths timed (measures nothing here)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from pinaivu_local.bench.gateway import GatewayLatency, percentile
from pinaivu_local.cli import main


def test_gateway_bench_end_to_end(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["bench", "--gateway", "10", "--work-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "10 requests per path" in result.output
    for row in ("direct to the node", "through the gateway", "added by the gateway"):
        assert row in result.output


def test_percentiles_and_the_table() -> None:
    values = tuple(float(v) for v in range(1, 101))
    assert (percentile(values, 50), percentile(values, 99)) == (50.5, 99.01)
    table = GatewayLatency(direct_ms=values, gateway_ms=tuple(v + 2 for v in values)).render()
    assert table.splitlines()[-1].split()[-2:] == ["2.00", "2.00"]
