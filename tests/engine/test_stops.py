"""Stop strings across token boundaries."""

from __future__ import annotations

from pinaivu_local.engine.stops import StopMatcher


def feed(stops: tuple[str, ...], pieces: list[str]) -> tuple[str, bool]:
    matcher = StopMatcher(stops)
    out = []
    for piece in pieces:
        text, hit = matcher.push(piece)
        out.append(text)
        if hit:
            return "".join(out), True
    return "".join(out) + matcher.flush(), False


def test_no_stops_passes_through() -> None:
    assert feed((), ["a", "b"]) == ("ab", False)


def test_stop_split_over_pieces_is_not_emitted() -> None:
    assert feed(("END",), ["abc E", "N", "D tail"]) == ("abc ", True)


def test_partial_match_is_released_when_it_diverges() -> None:
    matcher = StopMatcher(("END",))
    assert matcher.push("xE") == ("x", False)
    assert matcher.push("Nx") == ("ENx", False)


def test_earliest_of_several_stops() -> None:
    assert feed(("bb", "a"), ["xxbba"]) == ("xx", True)


def test_held_text_flushed_at_the_end() -> None:
    assert feed(("STOP",), ["hello ST"]) == ("hello ST", False)


def test_empty_stop_strings_are_ignored() -> None:
    assert feed(("",), ["abc"]) == ("abc", False)
