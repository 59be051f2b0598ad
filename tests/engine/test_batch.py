"""The step's llama_batch: what llama_decode will read after each seal, step after step."""

from __future__ import annotations

import pytest

from pinaivu_local.engine.batch import TokenBatch


def _rows(batch: TokenBatch) -> list[tuple[int, int, int, int, int]]:
    """(token, position, n_seq_id, seq_id, logits flag) of each row, read through the struct's pointers."""
    s = batch.struct
    return [(s.token[i], s.pos[i], s.n_seq_id[i], s.seq_id[i][0], s.logits[i]) for i in range(s.n_tokens)]


def test_a_seal_lays_out_every_row_through_the_structs_pointers() -> None:
    batch = TokenBatch(16)
    assert batch.add([7], 41, 3, logits=True) == 0  # a generating sequence: one token, its logits
    assert batch.add([10, 11, 12], 0, 5, logits=False) == -1  # a prompt chunk that does not reach its end
    assert batch.add([20, 21], 8, 1, logits=True) == 5  # a prompt's last chunk: logits of its last row
    assert len(batch) == 6
    batch.seal()
    assert _rows(batch) == [
        (7, 41, 1, 3, 1),
        (10, 0, 1, 5, 0),
        (11, 1, 1, 5, 0),
        (12, 2, 1, 5, 0),
        (20, 8, 1, 1, 0),
        (21, 9, 1, 1, 1),
    ]


def test_each_seal_flags_only_its_own_outputs() -> None:
    """A row an earlier step flagged for logits is not flagged in a later step that outputs elsewhere."""
    batch = TokenBatch(8)
    batch.add([1, 2, 3, 4], 0, 0, logits=True)
    batch.add([5, 6], 0, 1, logits=True)
    batch.seal()
    assert [r[4] for r in _rows(batch)] == [0, 0, 0, 1, 0, 1]
    batch.clear()
    batch.add([9, 9, 9, 9], 4, 0, logits=False)  # row 3 was the first step's output
    batch.add([8], 2, 1, logits=True)
    batch.seal()
    assert _rows(batch) == [(9, 4, 1, 0, 0), (9, 5, 1, 0, 0), (9, 6, 1, 0, 0), (9, 7, 1, 0, 0), (8, 2, 1, 1, 1)]


def test_rows_past_the_capacity_are_refused() -> None:
    batch = TokenBatch(4)
    batch.add([1, 2, 3], 0, 0, logits=False)
    with pytest.raises(ValueError, match="5 tokens do not fit a batch of 4"):
        batch.add([4, 5], 3, 0, logits=True)
    assert len(batch) == 3  # the refused rows were not added
