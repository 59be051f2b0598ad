"""Log-softmax, top candidates, token shapes, and which tokens a piece of returned text carries."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pinaivu_local.engine.detokenize import IncrementalText
from pinaivu_local.engine.logprobs import (
    VERY_UNLIKELY,
    TokenLogprob,
    TokenTrail,
    token_logprob,
    token_shape,
)
from pinaivu_local.engine.stops import StopMatcher


def _plain(token: int) -> tuple[str, bytes | None]:
    return f"t{token}", f"t{token}".encode()


def test_logprobs_are_a_log_softmax_of_the_logits_plus_bias() -> None:
    logits = np.array([1.0, 2.0, 0.5, -1.0], dtype=np.float32)
    entry = token_logprob(logits, {2: 3.0}, 0, 4, _plain)
    biased = [1.0, 2.0, 3.5, -1.0]
    total = math.log(sum(math.exp(x) for x in biased))
    assert entry.logprob == pytest.approx(1.0 - total)
    assert [t.token for t in entry.top] == ["t2", "t1", "t0", "t3"]
    assert [t.logprob for t in entry.top] == pytest.approx([3.5 - total, 2.0 - total, 1.0 - total, -1.0 - total])
    assert logits[2] == 0.5  # the logits the sampler reads are left alone


def test_masked_tokens_are_very_unlikely_not_minus_infinity() -> None:
    logits = np.array([0.0, -np.inf, 1.0], dtype=np.float32)
    entry = token_logprob(logits, {}, 1, 3, _plain)
    assert entry.logprob == VERY_UNLIKELY
    assert [t.token for t in entry.top] == ["t2", "t0", "t1"] and entry.top[2].logprob == VERY_UNLIKELY
    assert token_logprob(np.full(3, -np.inf, dtype=np.float32), {}, 0, 1, _plain).logprob == VERY_UNLIKELY


def test_top_candidates_sorted_most_likely_first_ties_by_id() -> None:
    logits = np.array([0.0, 3.0, 1.0, 3.0, 2.0], dtype=np.float32)
    entry = token_logprob(logits, {}, 2, 3, _plain)
    assert [t.token for t in entry.top] == ["t1", "t3", "t4"]
    assert entry.token == "t2" and entry.bytes == b"t2"
    assert token_logprob(logits, {}, 2, 0, _plain).top == ()
    assert len(token_logprob(logits, {}, 2, 20, _plain).top) == 5  # no more than the vocabulary


def test_token_shapes() -> None:
    assert token_shape(b"hi", None) == ("hi", b"hi")
    assert token_shape(b"", "<|eot_id|>") == ("<|eot_id|>", None)
    assert token_shape(b"\xe2\x80", None) == ("bytes:\\xe2\\x80", b"\xe2\x80")


def _entry(name: str) -> TokenLogprob:
    return TokenLogprob(name, name.encode(), -1.0, ())


def _generate(pieces: list[bytes], stops: tuple[str, ...]) -> list[tuple[str, list[str]]]:
    """Run pieces through the decoder, stop matcher and trail as the scheduler does: (text, tokens) per delta."""
    text, matcher, trail = IncrementalText(), StopMatcher(stops), TokenTrail(0)
    deltas: list[tuple[str, list[str]]] = []
    for i, piece in enumerate(pieces):
        decoded = text.push(piece)
        trail.add(_entry(str(i)), len(decoded), text.unfinished)
        out, hit = matcher.push(decoded)
        if hit:
            deltas.append((out, [e.token for e in trail.release(out, final=True)]))
            return deltas
        if out:
            deltas.append((out, [e.token for e in trail.release(out, final=False)]))
    tail, _ = matcher.push(text.flush())
    tail += matcher.flush()
    deltas.append((tail, [e.token for e in trail.release(tail, final=True)]))
    return deltas


def test_a_split_character_goes_out_with_the_token_that_completes_it() -> None:
    euro = "€".encode()
    assert _generate([b"a", euro[:2], euro[2:] + b"b"], ()) == [("a", ["0"]), ("€b", ["1", "2"]), ("", [])]


def test_tokens_held_by_a_stop_prefix_wait_for_their_text() -> None:
    assert _generate([b"x", b"EN", b"y"], ("END",)) == [("x", ["0"]), ("ENy", ["1", "2"]), ("", [])]


def test_tokens_inside_a_stop_string_are_not_reported() -> None:
    # "b" is the last returned token; "EN" and "D" wrote only the stop string.
    assert _generate([b"ab", b"EN", b"D"], ("END",)) == [("ab", ["0"]), ("", [])]


def test_a_token_cut_by_a_stop_string_is_reported_at_the_end() -> None:
    # "bEN" returned "b" only; whether the rest is a stop string is known when "D" comes.
    assert _generate([b"a", b"bEN", b"D"], ("END",)) == [("a", ["0"]), ("b", []), ("", ["1"])]


def test_offsets_are_characters_of_completion_text() -> None:
    trail = TokenTrail(0)
    for name, chars in (("é", 1), ("xy", 2), ("z", 1)):
        trail.add(_entry(name), chars, False)
    assert [e.text_offset for e in trail.release("éxyz", final=True)] == [0, 1, 3]
