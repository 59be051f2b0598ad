"""Sampling parameters of one request, and the llama.cpp sampler chain built from them."""

from __future__ import annotations

import ctypes
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

import llama_cpp.llama_cpp as llama

# How far back presence/frequency penalties look, in tokens.
PENALTY_WINDOW = 256


@dataclass(frozen=True)
class SamplingParams:
    """What the request asked for; OpenAI's defaults."""

    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: Mapping[int, float] = field(default_factory=dict)
    ignore_eos: bool = False


def build_sampler(params: SamplingParams, vocab: llama.llama_vocab_p, n_vocab: int) -> llama.llama_sampler_p:
    """A sampler chain (owned by the caller, freed with llama_sampler_free)."""
    chain = llama.llama_sampler_chain_init(llama.llama_sampler_chain_default_params())
    if params.logit_bias:
        biases = (llama.llama_logit_bias * len(params.logit_bias))(
            *(llama.llama_logit_bias(token=t, bias=b) for t, b in params.logit_bias.items())
        )
        llama.llama_sampler_chain_add(
            chain,
            llama.llama_sampler_init_logit_bias(
                n_vocab, len(biases), ctypes.cast(biases, ctypes.POINTER(llama.llama_logit_bias))
            ),
        )
    if params.presence_penalty or params.frequency_penalty:
        llama.llama_sampler_chain_add(
            chain,
            llama.llama_sampler_init_penalties(PENALTY_WINDOW, 1.0, params.frequency_penalty, params.presence_penalty),
        )
    if params.temperature == 0:
        llama.llama_sampler_chain_add(chain, llama.llama_sampler_init_greedy())
        return chain
    if params.top_p < 1.0:
        llama.llama_sampler_chain_add(chain, llama.llama_sampler_init_top_p(params.top_p, 1))
    llama.llama_sampler_chain_add(chain, llama.llama_sampler_init_temp(params.temperature))
    seed = params.seed if params.seed is not None else secrets.randbits(32)
    llama.llama_sampler_chain_add(chain, llama.llama_sampler_init_dist(seed & 0xFFFFFFFF))
    return chain
