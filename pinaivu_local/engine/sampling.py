"""Sampling parameters of one request, and the llama.cpp sampler chain built from them."""

from __future__ import annotations

import ctypes
import hashlib
import json
import logging
import math
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import llama_cpp.llama_cpp as llama
import numpy as np
import numpy.typing as npt

from pinaivu_local.errors import InternalError, InvalidRequest

log = logging.getLogger(__name__)

# stop and logit_bias are kept verbatim in a record up to this many bytes each (of their JSON);
# beyond it, only their SHA-256, count and size, so a record stays a few KB whatever the request.
KEEP_VERBATIM_BYTES = 2048


@dataclass(frozen=True)
class SamplingParams:
    """What the request asked for; OpenAI's defaults."""

    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: Mapping[int, float] = field(default_factory=dict)
    ignore_eos: bool = False
    top_k: int | None = None  # only the k most likely tokens are drawn from (Anthropic's top_k); None: all
    # Not sampling but what is reported of it: None, no logprobs; k, each token's and the k most likely.
    # Never recorded (to_json): a replay compares text only.
    logprobs: int | None = None

    @property
    def plain_greedy(self) -> bool:
        """The most likely token each step, the logits untouched by bias or penalties: an argmax."""
        return (
            self.temperature == 0 and not self.logit_bias and not self.presence_penalty and not self.frequency_penalty
        )

    @property
    def deterministic(self) -> bool:
        """Greedy decoding, or sampling from a fixed seed: a replay gives the same text."""
        return self.temperature == 0 or self.seed is not None

    def to_json(self, max_tokens: int) -> str:
        """What a replay needs, with the completion budget, as sorted JSON of a few KB at most.

        `stop` and `logit_bias` larger than KEEP_VERBATIM_BYTES are replaced by `stop_digest` /
        `logit_bias_digest` ({"sha256", "count", "bytes"} of their compact sorted UTF-8 JSON): such a
        request is then not replayable (`not_kept`), but what it asked for can still be checked.
        """
        values: dict[str, Any] = {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "seed": self.seed,
            "max_tokens": max_tokens,
            "presence_penalty": self.presence_penalty,
            "frequency_penalty": self.frequency_penalty,
            "ignore_eos": self.ignore_eos,
        }
        if self.top_k is not None:  # only when asked: every other record's JSON stays as it was
            values["top_k"] = self.top_k
        large: dict[str, Any] = {
            "stop": list(self.stop),
            "logit_bias": {str(token): bias for token, bias in self.logit_bias.items()},
        }
        for name, value in large.items():
            if not value:  # most requests: nothing to measure (every record makes this JSON)
                values[name] = value
                continue
            data = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
            if len(data) <= KEEP_VERBATIM_BYTES:
                values[name] = value
            else:
                values[f"{name}_digest"] = {
                    "sha256": hashlib.sha256(data).hexdigest(),
                    "count": len(value),
                    "bytes": len(data),
                }
        return json.dumps(values, sort_keys=True)

    @staticmethod
    def not_kept(values: Mapping[str, Any]) -> str | None:
        """Why `to_json`'s output cannot rebuild the request's parameters (too large to keep), if it cannot."""
        for name, what in (("stop", "stop strings"), ("logit_bias", "logit_bias entries")):
            digest = values.get(f"{name}_digest")
            if isinstance(digest, dict):
                return (
                    f"its {digest.get('count')} {what} ({digest.get('bytes')} bytes) were too large to keep in the "
                    "record (only their SHA-256 is stored), so it cannot be replayed"
                )
        return None

    @classmethod
    def from_json(cls, values: Mapping[str, Any]) -> tuple[SamplingParams, int | None]:
        """The parameters and completion budget `to_json` wrote (defaults for what is absent).

        ValueError when `not_kept` says they cannot be rebuilt: a replay without them would differ.
        """
        reason = cls.not_kept(values)
        if reason:
            raise ValueError(reason)
        params = cls(
            temperature=values.get("temperature", 1.0),
            top_p=values.get("top_p", 1.0),
            seed=values.get("seed"),
            stop=tuple(values.get("stop", ())),
            presence_penalty=values.get("presence_penalty", 0.0),
            frequency_penalty=values.get("frequency_penalty", 0.0),
            logit_bias={int(token): bias for token, bias in values.get("logit_bias", {}).items()},
            ignore_eos=values.get("ignore_eos", False),
            top_k=values.get("top_k"),
        )
        return params, values.get("max_tokens")


def argmax_tokens(ctx: llama.llama_context_p, indices: list[int], n_vocab: int) -> list[int]:
    """The most likely token of each batch output in `indices` (ascending), as llama.cpp's greedy sampler picks
    it (the first of equal logits), read straight from the logits.

    The greedy sampler first copies all n_vocab candidates into an array of its own, which costs several
    times the scan itself: with Llama 3's 128k vocabulary, 0.43 ms a sequence against 0.05 here, most of
    a step at 32 sequences on a GPU. Rows that lie one after another in llama.cpp's output buffer (the
    usual case: every sequence of the step greedy) are scanned as one array.
    """
    if len(indices) > 1:
        # Distinct outputs, ascending: the first and last rows exactly n - 1 rows apart hold all of them.
        first = _address(llama.llama_get_logits_ith(ctx, indices[0]))
        last = _address(llama.llama_get_logits_ith(ctx, indices[-1]))
        if last - first == (len(indices) - 1) * n_vocab * ctypes.sizeof(ctypes.c_float):
            block = _floats(first, len(indices) * n_vocab).reshape(len(indices), n_vocab)
            return [int(token) for token in block.argmax(axis=1)]
    return [int(logits_row(ctx, index, n_vocab).argmax()) for index in indices]


def logits_row(ctx: llama.llama_context_p, index: int, n_vocab: int) -> npt.NDArray[np.float32]:
    """The logits of batch output `index`, a view of llama.cpp's buffer (valid until the next decode)."""
    return _floats(_address(llama.llama_get_logits_ith(ctx, index)), n_vocab)


def _address(pointer: object) -> int:
    """Where a `float *` from llama.cpp points; ValueError for a NULL one (an index with no logits)."""
    return ctypes.addressof(cast("ctypes._Pointer[ctypes.c_float]", pointer).contents)


def _floats(address: int, count: int) -> npt.NDArray[np.float32]:
    # Under half of np.ctypeslib.as_array's cost (2.6 against 6.7 us a row here), which every greedy step
    # paid per sequence: ctypes keeps one array type per length, and numpy views its buffer without a copy.
    return np.frombuffer(memoryview((ctypes.c_float * count).from_address(address)), np.float32)


def build_sampler(params: SamplingParams, n_vocab: int, max_tokens: int) -> llama.llama_sampler_p:
    """A sampler chain (owned by the caller, freed with llama_sampler_free).

    InvalidRequest names a parameter llama.cpp refused; InternalError is our own bug. Either
    way nothing leaks and the engine thread never sees the request.
    """
    _check_finite(params)
    chain = llama.llama_sampler_chain_init(llama.llama_sampler_chain_default_params())
    try:
        _fill_chain(chain, params, n_vocab, max_tokens)
    except InvalidRequest:
        llama.llama_sampler_free(chain)
        raise
    except Exception as exc:  # a binding that does not match the library: ours to fix, not the client's
        llama.llama_sampler_free(chain)
        log.exception("could not build a sampler for %s", params)
        raise InternalError(
            "The server could not set up sampling for this request (a bug in pinaivu-local, logged on the "
            "server); other requests are not affected."
        ) from exc
    return chain


def _fill_chain(chain: llama.llama_sampler_p, params: SamplingParams, n_vocab: int, max_tokens: int) -> None:
    """Bias, penalties, then greedy or top-k, top-p, temperature and a seeded draw: OpenAI's order."""

    def add(param: str, make: Callable[[], llama.llama_sampler_p]) -> None:
        sampler = make()
        if not sampler:
            raise InvalidRequest(f"llama.cpp refused the sampling parameter {param}; change or omit it.", param=param)
        llama.llama_sampler_chain_add(chain, sampler)

    if params.logit_bias:
        biases = (llama.llama_logit_bias * len(params.logit_bias))(
            *(llama.llama_logit_bias(token=t, bias=b) for t, b in params.logit_bias.items())
        )
        pointer = ctypes.cast(biases, ctypes.POINTER(llama.llama_logit_bias))
        add("logit_bias", lambda: llama.llama_sampler_init_logit_bias(n_vocab, len(biases), pointer))
    if params.presence_penalty or params.frequency_penalty:
        # OpenAI's penalties count every generated token, so the window is the whole completion;
        # the repeat penalty (1.0) is llama.cpp's own and stays off. Prompt tokens are never counted:
        # the chain only ever accepts the tokens it samples.
        add(
            "presence_penalty" if params.presence_penalty else "frequency_penalty",
            lambda: llama.llama_sampler_init_penalties(
                n_vocab, max(1, max_tokens), 1.0, params.frequency_penalty, params.presence_penalty
            ),
        )
    if params.temperature == 0:
        add("temperature", llama.llama_sampler_init_greedy)
        return
    if params.top_k is not None:
        add("top_k", lambda: llama.llama_sampler_init_top_k(params.top_k or 0))
    if params.top_p < 1.0:
        add("top_p", lambda: llama.llama_sampler_init_top_p(params.top_p, 1))
    add("temperature", lambda: llama.llama_sampler_init_temp(params.temperature))
    seed = params.seed if params.seed is not None else secrets.randbits(32)
    add("seed", lambda: llama.llama_sampler_init_dist(seed & 0xFFFFFFFF))


def _check_finite(params: SamplingParams) -> None:
    """llama.cpp asserts on non-finite penalties; refuse them by name instead (JSON allows NaN)."""
    numbers = {
        "temperature": params.temperature,
        "top_p": params.top_p,
        "presence_penalty": params.presence_penalty,
        "frequency_penalty": params.frequency_penalty,
    }
    for name, value in [*numbers.items(), *(("logit_bias", b) for b in params.logit_bias.values())]:
        if not math.isfinite(value):
            raise InvalidRequest(f"{name} must be a finite number, not {value}.", param=name)
