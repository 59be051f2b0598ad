"""A call's arguments in a conversation's history, as the chat template takes them: one JSON object."""

from __future__ import annotations

import json
from typing import Any

from pinaivu_local.engine.prepared import nesting_depth
from pinaivu_local.errors import InvalidRequest

# The chat template writes call arguments (and our rendering marks them) level by level, recursively:
# deeper than any real call, and deeper would exhaust the stack (a 500) where a 400 belongs.
MAX_ARGUMENT_NESTING = 64


def argument_values(name: str, arguments: str, *, where: str, param: str) -> dict[str, Any]:
    """The arguments string of a call to `name` as an object; InvalidRequest (naming `where` the call is and
    `param`) when it is not a JSON object or nests too deep."""
    too_deep = False
    try:
        values = json.loads(arguments)
    except json.JSONDecodeError:
        values = None
    except RecursionError:  # nested past Python's own limit, far deeper than ours
        values, too_deep = None, True
    if too_deep or (isinstance(values, dict) and nesting_depth(values) > MAX_ARGUMENT_NESTING):
        raise InvalidRequest(
            f"The arguments of the call to {name} in the {where} nest more than {MAX_ARGUMENT_NESTING} "
            "levels deep; send flatter arguments.",
            param=param,
        )
    if not isinstance(values, dict):
        raise InvalidRequest(
            f"The arguments of the call to {name} in the {where} are not a JSON object; "
            "send them back as the response carried them.",
            param=param,
        )
    return values
