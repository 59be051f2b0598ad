"""Model id suggestions for near misses (the API's 404s and `models pull`)."""

from __future__ import annotations

import pytest

from pinaivu_local.suggest import suggest

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


def test_nothing_to_suggest_from() -> None:
    assert suggest("llama3.2:1b", []) is None
