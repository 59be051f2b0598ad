"""What a record commits to: SHA-256 of the canonical JSON input and of the output text."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces, UTF-8 kept: the same value always gives the same text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def input_digest(value: Any) -> str:
    """SHA-256 of the canonical JSON of the messages (chat) or the prompt (text)."""
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()


def output_digest(text: str) -> str:
    """SHA-256 of the output text, UTF-8."""
    return hashlib.sha256(text.encode()).hexdigest()


def first_divergence(expected: str, actual: str) -> int | None:
    """Index of the first differing character, or None when equal."""
    for i, (a, b) in enumerate(zip(expected, actual, strict=False)):
        if a != b:
            return i
    return None if len(expected) == len(actual) else min(len(expected), len(actual))
