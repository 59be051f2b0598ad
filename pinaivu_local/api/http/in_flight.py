"""How many requests each key has in flight (reading its body, queued or running), capped per key.

Without a cap one key could hold every socket the server accepts (PINAIVU_MAX_CONNECTIONS) with
bodies that never finish, or with more streams than anyone else; the cap keeps room for other keys.
"""

from __future__ import annotations

from pinaivu_local.errors import RateLimited

# A key at its cap is told to retry after this long: a request in flight usually ends sooner.
RETRY_AFTER_MS = 1000


class InFlight:
    """Counts each key's requests from authentication to their last byte; refuses one past the cap."""

    def __init__(self, per_key: int) -> None:
        self.per_key = per_key
        self._counts: dict[str, int] = {}

    def enter(self, key_id: str, key_name: str) -> Slot:
        """Count one more request of `key_id`, or raise RateLimited (429) when it has `per_key` already."""
        count = self._counts.get(key_id, 0)
        if count >= self.per_key:
            raise RateLimited(
                f"Too many requests in flight for this API key ({key_name!r}): {self.per_key} at once is the "
                "limit (PINAIVU_MAX_IN_FLIGHT_PER_KEY). Wait for one to finish, then retry.",
                limit_type="requests",
                retry_after_ms=RETRY_AFTER_MS,
            )
        self._counts[key_id] = count + 1
        return Slot(self, key_id)

    def count(self, key_id: str) -> int:
        """Requests of `key_id` in flight now."""
        return self._counts.get(key_id, 0)

    def _leave(self, key_id: str) -> None:
        left = self._counts[key_id] - 1
        if left:
            self._counts[key_id] = left
        else:
            del self._counts[key_id]  # an idle key keeps no entry


class Slot:
    """One request's place in its key's count; release() is idempotent."""

    def __init__(self, in_flight: InFlight, key_id: str) -> None:
        self._in_flight = in_flight
        self._key_id = key_id
        self._held = True

    def release(self) -> None:
        """The request's response has ended (or it never got one): its place is free."""
        if self._held:
            self._held = False
            self._in_flight._leave(self._key_id)
