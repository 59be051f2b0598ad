"""How a record's free text is stored, so that every string comes back exactly on SQLite and on Postgres.

Postgres text cannot hold U+0000 (its JSON cannot either), yet a model can write it (the byte-0 token)
and a client can send it. A row whose free text holds U+0000 is stored with each of those columns as
its JSON string literal (U+0000 becomes the six characters `\\u0000`) and `text_encoding = "json"`;
every other row, and every row written before this existed, holds its text as it is (NULL), so
ordinary rows cost nothing more and stay readable in SQL. Encoding on write (`stored_row`) and
decoding on load (`decoded`) are the only places that know.
"""

from __future__ import annotations

import json
from typing import Any

# The columns holding text as a client, a key's admin or the model wrote it. The others are ids,
# hashes, catalog names or JSON that json.dumps wrote (which escapes U+0000 itself); queries filter
# on some of them, so they are never encoded.
FREE_TEXT = ("key_name", "error", "input_content", "output_content")
JSON_LITERALS = "json"


def stored_row(row: dict[str, Any]) -> dict[str, Any]:
    """The request_log row as it is written: its free text as JSON literals when any of it holds U+0000."""
    if not any(isinstance(row.get(column), str) and "\x00" in row[column] for column in FREE_TEXT):
        return {**row, "text_encoding": None}
    encoded = {**row, "text_encoding": JSON_LITERALS}
    for column in FREE_TEXT:
        if isinstance(row.get(column), str):
            encoded[column] = json.dumps(row[column], ensure_ascii=False)
    return encoded


def decoded(values: dict[str, Any], text_encoding: str | None) -> dict[str, Any]:
    """The free-text columns of a stored row as they were before `stored_row` (only those it changed)."""
    if text_encoding is None:
        return {}
    if text_encoding != JSON_LITERALS:
        raise ValueError(f"request_log: unknown text_encoding {text_encoding!r}")
    return {column: json.loads(values[column]) for column in FREE_TEXT if isinstance(values.get(column), str)}
