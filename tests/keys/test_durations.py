"""Key lifetimes like 30d, 12h, 90m."""

from __future__ import annotations

from datetime import timedelta

import pytest

from pinaivu_local.keys.durations import parse_duration


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("30d", timedelta(days=30)),
        ("12h", timedelta(hours=12)),
        ("90m", timedelta(minutes=90)),
        ("5s", timedelta(seconds=5)),
    ],
)
def test_parse(text: str, value: timedelta) -> None:
    assert parse_duration(text) == value


@pytest.mark.parametrize("text", ["", "30", "d", "-1d", "0h", "1w", "1.5h"])
def test_refused_with_the_format(text: str) -> None:
    with pytest.raises(ValueError, match="like 30d, 12h, 90m"):
        parse_duration(text)
