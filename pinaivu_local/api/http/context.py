"""What one HTTP request learns while it is served, in one typed object the middleware reads at the end."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pinaivu_local.api.flow.inference import Run
from pinaivu_local.api.flow.principal import Principal
from pinaivu_local.api.http.in_flight import Slot
from pinaivu_local.errors import AuthenticationError
from pinaivu_local.requestlog.records import FinishedRequest

# The one key this project uses in the ASGI scope's per-request state.
_STATE_KEY = "pinaivu_context"


@dataclass
class RequestContext:
    """Who called, which model it asked for, and the run it started (its request_id and record, for logs)."""

    principal: Principal | None = None
    model_id: str | None = None
    run: Run | None = None
    in_flight: Slot | None = None  # its place in its key's requests in flight, released when it ends
    record: FinishedRequest | None = None  # a request that is not a run (embeddings, rerank): its record
    authenticated_ns: int | None = None  # when its key was checked (wall clock, ns): where a trace's auth ends

    def caller(self) -> Principal:
        """The authenticated caller; only routes behind the key guard ask."""
        if self.principal is None:
            raise AuthenticationError("This endpoint needs an API key.", code="missing_api_key")
        return self.principal


def context_of(scope: Any) -> RequestContext:
    """The context of the request whose ASGI scope this is, created on first use."""
    state: dict[str, Any] = scope.setdefault("state", {})
    context = state.get(_STATE_KEY)
    if not isinstance(context, RequestContext):
        context = state[_STATE_KEY] = RequestContext()
    return context
