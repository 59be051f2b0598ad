"""A model's llama context: how it is shaped for continuous batching, and how it is made."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import llama_cpp.llama_cpp as llama

from pinaivu_local.engine.llama_model import LlamaModel
from pinaivu_local.errors import EngineFailure


@dataclass(frozen=True)
class ContextConfig:
    """How the llama context of one model is shaped."""

    n_ctx: int
    parallel: int
    n_threads: int
    max_queue: int
    n_batch: int = 512
    # A request's new text is handed over at most this often (its first token and its end at once):
    # each hand-over costs the event loop a wake-up and the stream an HTTP chunk (a system call).
    text_interval_s: float = 0.0
    # Host memory for finished sequences' saved cells; None: as many tokens as the context holds.
    prompt_cache_bytes: int | None = None


def create_context(model: LlamaModel, config: ContextConfig) -> Any:  # a llama_context_p (ctypes, untyped)
    """A context of `config`'s shape: one unified KV cache that any of its sequences may fill."""
    params = llama.llama_context_default_params()
    params.n_ctx = config.n_ctx
    params.n_batch = min(config.n_batch, config.n_ctx)
    params.n_ubatch = params.n_batch
    params.n_seq_max = config.parallel
    params.n_threads = config.n_threads
    params.n_threads_batch = config.n_threads
    params.kv_unified = True  # any sequence may use the whole context
    params.no_perf = True
    ctx = llama.llama_init_from_model(model.ptr, params)
    if not ctx:
        raise EngineFailure(f"{model.path}: llama.cpp could not create a context of {config.n_ctx} tokens")
    return ctx
