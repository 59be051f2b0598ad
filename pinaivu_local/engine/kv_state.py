"""A sequence's KV cells copied out of a llama.cpp context into host memory, and back into a slot."""

from __future__ import annotations

import ctypes
from typing import Any

import llama_cpp.llama_cpp as llama


def save_sequence(ctx: llama.llama_context_p, seq_id: int) -> ctypes.Array[Any] | None:
    """A copy of `seq_id`'s cells (positions and K/V data); None if llama.cpp wrote less than it announced."""
    size = llama.llama_state_seq_get_size(ctx, seq_id)
    state: ctypes.Array[Any] = (ctypes.c_uint8 * size)()
    if llama.llama_state_seq_get_data(ctx, state, size, seq_id) != size:
        return None
    return state


def restore_sequence(ctx: llama.llama_context_p, state: ctypes.Array[Any], seq_id: int) -> bool:
    """Put a saved copy's cells into `seq_id` (emptied first), at their positions; False if they found no room."""
    return bool(llama.llama_state_seq_set_data(ctx, state, len(state), seq_id))
