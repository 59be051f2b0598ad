"""The llama_batch each engine step decodes, laid over ctypes arrays this object owns.

llama_batch_init's batch is written one ctypes element at a time (five foreign writes per token,
two of them through a pointer to a pointer). Here the step's rows are gathered in Python lists and
copied into the arrays in one slice assignment per field; the seq_id pointers are set once, each to
its row of one int32 array, since every row belongs to exactly one sequence. The arrays are ctypes
ones rather than numpy's, whose conversion of each list costs more than the copy: a step of one
generating sequence is sealed in 0.6 us against 2.5-3 (3 against 14 under cProfile right after a
decode, with cold caches), one of 32 in 5 against 6-7; a 500-token prompt's takes 44 against 38,
beside the milliseconds of its llama_decode.
"""

from __future__ import annotations

import ctypes
from typing import Any

import llama_cpp.llama_cpp as llama


class TokenBatch:
    """Up to `capacity` tokens of several sequences, one sequence id per token."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        # Typed loosely: the stubs type a slice of an int32 array as a list of c_int32, not of int.
        self._token: ctypes.Array[Any] = (llama.llama_token * capacity)()
        self._pos: ctypes.Array[Any] = (llama.llama_pos * capacity)()
        self._n_seq_id = (ctypes.c_int32 * capacity)(*([1] * capacity))
        self._seq: ctypes.Array[Any] = (llama.llama_seq_id * capacity)()
        self._logits = (ctypes.c_int8 * capacity)()
        seq_ptr = ctypes.POINTER(llama.llama_seq_id)
        base, size = ctypes.addressof(self._seq), ctypes.sizeof(llama.llama_seq_id)
        self._seq_rows = (seq_ptr * capacity)(*(ctypes.cast(base + i * size, seq_ptr) for i in range(capacity)))
        self.struct = llama.llama_batch(
            n_tokens=0,
            token=ctypes.cast(self._token, ctypes.POINTER(llama.llama_token)),
            embd=None,
            pos=ctypes.cast(self._pos, ctypes.POINTER(llama.llama_pos)),
            n_seq_id=ctypes.cast(self._n_seq_id, ctypes.POINTER(ctypes.c_int32)),
            seq_id=ctypes.cast(self._seq_rows, ctypes.POINTER(seq_ptr)),
            logits=ctypes.cast(self._logits, ctypes.POINTER(ctypes.c_int8)),
        )
        self._tokens: list[int] = []
        self._positions: list[int] = []
        self._seqs: list[int] = []
        self._outputs: list[int] = []

    def __len__(self) -> int:
        return len(self._tokens)

    def clear(self) -> None:
        """Start a new step's rows."""
        self._tokens, self._positions, self._seqs, self._outputs = [], [], [], []

    def add(self, tokens: list[int], start: int, seq_id: int, *, logits: bool) -> int:
        """Rows for `tokens` at positions start.. of `seq_id`; the last row's logits index if asked, else -1."""
        n = len(tokens)
        if len(self._tokens) + n > self.capacity:
            raise ValueError(f"{len(self._tokens) + n} tokens do not fit a batch of {self.capacity}")
        self._tokens += tokens
        self._positions += range(start, start + n)
        self._seqs += [seq_id] * n
        if not logits:
            return -1
        self._outputs.append(len(self._tokens) - 1)
        return len(self._tokens) - 1

    def seal(self) -> llama.llama_batch:
        """Copy the rows into the arrays llama_decode reads; the struct to pass it."""
        n = len(self._tokens)
        self._token[:n] = self._tokens
        self._pos[:n] = self._positions
        self._seq[:n] = self._seqs
        self._logits[:n] = [0] * n
        for row in self._outputs:
            self._logits[row] = 1
        self.struct.n_tokens = n
        return self.struct
