"""GET /admin/usage: requests and tokens per key and per model and hour, and the last 24 hours slot by slot
(admin keys only)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from litestar import get
from litestar.di import NamedDependency
from litestar.params import FromQuery

from pinaivu_local.api.http.openapi import error_responses
from pinaivu_local.clock import utcnow
from pinaivu_local.errors import InvalidRequest
from pinaivu_local.requestlog.log import RequestLog

MAX_HOURS = 24 * 31


@get("/usage", summary="Usage per key and per model and hour", responses=error_responses(400, 401, 403))
async def usage(request_log: NamedDependency[RequestLog], hours: FromQuery[int] = 24) -> dict[str, Any]:
    """From the request log: the dashboard's table and chart."""
    if not 1 <= hours <= MAX_HOURS:
        raise InvalidRequest(f"hours must be between 1 and {MAX_HOURS}.", param="hours")
    now = utcnow()
    since = now - timedelta(hours=hours)
    keys = await request_log.call(request_log.usage_by_key, since)
    models = await request_log.call(request_log.usage_by_model_hour, since)
    # the dashboard's charts: always the last 24 whole hours, whatever `hours` is
    per_hour = await request_log.call(request_log.per_hour, now)
    return {"hours": hours, "keys": keys, "models": models, "per_hour": per_hour}
