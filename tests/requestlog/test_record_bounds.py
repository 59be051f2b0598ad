"""What a record keeps of a request: bounded sampling JSON (older records still read), short errors."""

from __future__ import annotations

import hashlib
import json

import pytest

from pinaivu_local.clock import utcnow
from pinaivu_local.engine.sampling import KEEP_VERBATIM_BYTES, SamplingParams
from pinaivu_local.requestlog.commitment import input_digest
from pinaivu_local.requestlog.records import MAX_ERROR_CHARS, FinishedRequest, bounded


def test_small_stop_and_bias_are_kept_verbatim_and_round_trip() -> None:
    params = SamplingParams(temperature=0, stop=("a", "bc"), logit_bias={5: -100.0, 7: 2.5}, seed=1)
    values = json.loads(params.to_json(42))
    assert values["stop"] == ["a", "bc"] and values["logit_bias"] == {"5": -100.0, "7": 2.5}
    assert SamplingParams.not_kept(values) is None
    assert SamplingParams.from_json(values) == (params, 42)


def test_large_stop_and_bias_become_digests() -> None:
    stops = ("x" * 2_000_000,) * 4
    bias = {t: 1.0 for t in range(100_000)}
    text = SamplingParams(stop=stops, logit_bias=bias).to_json(16)
    assert len(text) < 1024
    values = json.loads(text)
    compact = json.dumps(list(stops), separators=(",", ":")).encode()
    assert values["stop_digest"] == {"sha256": hashlib.sha256(compact).hexdigest(), "count": 4, "bytes": len(compact)}
    assert values["logit_bias_digest"]["count"] == 100_000
    assert "stop" not in values and "logit_bias" not in values
    reason = SamplingParams.not_kept(values)
    assert reason is not None and "4 stop strings" in reason and "cannot be replayed" in reason
    with pytest.raises(ValueError, match="too large to keep"):
        SamplingParams.from_json(values)


def test_the_threshold_is_in_bytes_of_json() -> None:
    fits = ("é" * ((KEEP_VERBATIM_BYTES - 4) // 2),)  # two bytes per character in UTF-8
    over = ("é" * (KEEP_VERBATIM_BYTES // 2),)
    assert "stop" in json.loads(SamplingParams(stop=fits).to_json(1))
    assert "stop_digest" in json.loads(SamplingParams(stop=over).to_json(1))


def test_records_written_before_the_bound_still_read() -> None:
    old = {"temperature": 0, "stop": ["x" * 10_000], "logit_bias": {"3": -100}, "max_tokens": 8}
    params, budget = SamplingParams.from_json(old)
    assert params.stop == ("x" * 10_000,) and params.logit_bias == {3: -100} and budget == 8


def test_long_errors_are_truncated() -> None:
    record = FinishedRequest(
        request_id="req_1",
        created_at=utcnow(),
        kind="text",
        key_id="k",
        key_name="k",
        model_id="m",
        status_code=500,
        error="boom " * 10_000,
        input_sha256=input_digest("p"),
    )
    assert len(bounded(record).error or "") == MAX_ERROR_CHARS
