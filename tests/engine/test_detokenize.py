"""Incremental UTF-8 decoding of token pieces."""

from __future__ import annotations

from pinaivu_local.engine.detokenize import IncrementalText


def test_multibyte_character_split_over_tokens() -> None:
    text = IncrementalText()
    data = "héllo 👋".encode()
    out = [text.push(data[i : i + 1]) for i in range(len(data))]
    assert "".join(out) == "héllo 👋"
    assert out[1] == ""  # first byte of é held back
    assert text.flush() == ""


def test_invalid_bytes_become_replacement_characters() -> None:
    text = IncrementalText()
    assert text.push(b"ok\xff") == "ok\ufffd"
    assert text.push(b"\xe2\x82") == ""
    assert text.flush() == "\ufffd"
