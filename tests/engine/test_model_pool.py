"""Model id suggestions for near misses."""

from __future__ import annotations

import pytest

from pinaivu_local.engine.model_pool import suggest

IDS = ["llama3.2:1b", "llama3.2:3b"]


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        ("llama-3.2-3b", "llama3.2:3b"),
        ("Llama3.2-1B", "llama3.2:1b"),
        ("llama3.2:3", "llama3.2:3b"),
        ("gpt-4o", None),
    ],
)
def test_suggest(typed: str, meant: str | None) -> None:
    assert suggest(typed, IDS) == meant


def test_a_bare_family_name_gets_one_of_its_sizes() -> None:
    assert suggest("llama3.2", IDS) in IDS
