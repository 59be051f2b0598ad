"""`30d`, `12h`, `90m` style durations for key expiry."""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
_PATTERN = re.compile(r"^\s*([0-9]{1,9})\s*([dhms])\s*$")
# Longer than any key should live, short enough that every date it gives can be stored.
MAX = timedelta(days=100 * 365)


def parse_duration(text: str) -> timedelta:
    """Parse `<number><d|h|m|s>`; ValueError with a message that shows the format."""
    match = _PATTERN.match(text)
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"invalid duration {text!r}: use a positive number and a unit, like 30d, 12h, 90m or 45s")
    duration = timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    if duration > MAX:
        raise ValueError(f"invalid duration {text!r}: at most {MAX.days}d")
    return duration
