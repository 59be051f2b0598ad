"""How often a stream's new text goes out: the server's PINAIVU_STREAM_INTERVAL_MS, or what a request asks.

A gateway asks its nodes for every token at once (this header, 0): it counts the tokens of a stream that
is cut short (its client left, its node failed) by the chunks it got, one token a chunk, so a node that
joined the text of several tokens into one chunk would have it count too few.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from litestar.openapi.spec import OpenAPIType, Parameter, Schema

from pinaivu_local.errors import InvalidRequest
from pinaivu_local.settings import MAX_STREAM_INTERVAL_MS
from pinaivu_local.wire import STREAM_INTERVAL_HEADER

# The header in the OpenAPI document of the routes that read it.
STREAM_INTERVAL_PARAMETER = Parameter(
    name=STREAM_INTERVAL_HEADER,
    param_in="header",
    required=False,
    schema=Schema(type=OpenAPIType.NUMBER, minimum=0, maximum=MAX_STREAM_INTERVAL_MS),
    description=(
        "How often a stream's new text goes out, in milliseconds (0: every token as it is decoded); "
        "without it, the server's PINAIVU_STREAM_INTERVAL_MS."
    ),
)


def requested_interval_s(headers: Mapping[str, str]) -> float | None:
    """The interval the request's header asks for, in seconds; None without the header."""
    value = headers.get(STREAM_INTERVAL_HEADER)
    if value is None:
        return None
    try:
        ms = float(value)
    except ValueError:
        ms = math.nan
    if not 0 <= ms <= MAX_STREAM_INTERVAL_MS:  # NaN fails this too
        raise InvalidRequest(
            f"The header {STREAM_INTERVAL_HEADER} must be a number of milliseconds from 0 to "
            f"{MAX_STREAM_INTERVAL_MS:g}, not {value[:40]!r}; send it so, or leave it out."
        )
    return ms / 1000
