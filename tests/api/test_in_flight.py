"""The per-key count of requests in flight: a cap per key, places given back exactly once."""

from __future__ import annotations

import pytest

from pinaivu_local.api.http.in_flight import InFlight
from pinaivu_local.errors import RateLimited


def test_a_key_at_its_cap_is_refused_and_others_are_not() -> None:
    in_flight = InFlight(per_key=2)
    first, _ = in_flight.enter("a", "alpha"), in_flight.enter("a", "alpha")
    with pytest.raises(RateLimited) as caught:
        in_flight.enter("a", "alpha")
    assert "'alpha'" in caught.value.message and "2 at once" in caught.value.message
    assert caught.value.retry_after_ms == 1000
    in_flight.enter("b", "beta")  # another key has its own room
    first.release()
    first.release()  # idempotent: the second release frees nothing more
    assert in_flight.count("a") == 1
    in_flight.enter("a", "alpha")
    with pytest.raises(RateLimited):
        in_flight.enter("a", "alpha")


def test_an_idle_key_keeps_no_entry() -> None:
    in_flight = InFlight(per_key=1)
    in_flight.enter("a", "alpha").release()
    assert in_flight.count("a") == 0 and not in_flight._counts
