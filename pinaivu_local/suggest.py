""" "Did you mean ...?": the model id a mistyped one most likely meant."""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence


def _squash(text: str) -> str:
    # Case and separators are what people get wrong: llama-3.2-3b, Llama3.2:3B.
    return re.sub(r"[^a-z0-9.]", "", text.lower())


def suggest(model_id: str, candidates: Sequence[str]) -> str | None:
    """The candidate a mistyped id most likely meant (llama-3.2-3b -> llama3.2:3b), or None."""
    wanted = _squash(model_id)
    for candidate in candidates:
        if _squash(candidate) == wanted:
            return candidate
    close = difflib.get_close_matches(wanted, [_squash(c) for c in candidates], n=1, cutoff=0.75)
    if close:
        return next(c for c in candidates if _squash(c) == close[0])
    return None
