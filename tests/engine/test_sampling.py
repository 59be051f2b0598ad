"""The sampler chain on hand-made logits: OpenAI's penalty arithmetic, refusals that name the field."""

from __future__ import annotations

import ctypes
import json
import math
from collections.abc import Iterator

import llama_cpp.llama_cpp as llama
import pytest

import pinaivu_local.engine.sampling as sampling_module
from pinaivu_local.engine.sampling import SamplingParams, build_sampler
from pinaivu_local.errors import InternalError, InvalidRequest

N_VOCAB = 8


@pytest.fixture(autouse=True, scope="module")
def backend() -> Iterator[None]:
    llama.llama_backend_init()
    yield


def apply(params: SamplingParams, generated: list[int], max_tokens: int = 16) -> list[float]:
    """Logits of an all-zero vocabulary after the chain's transforms, `generated` accepted first."""
    chain = build_sampler(params, N_VOCAB, max_tokens)
    try:
        for token in generated:
            llama.llama_sampler_accept(chain, token)
        data = (llama.llama_token_data * N_VOCAB)(*(llama.llama_token_data(i, 0.0, 0.0) for i in range(N_VOCAB)))
        array = llama.llama_token_data_array(data, N_VOCAB, -1, False)
        # Apply every link but the last (the greedy pick or the seeded draw, which only select).
        for i in range(llama.llama_sampler_chain_n(chain) - 1):
            llama.llama_sampler_apply(llama.llama_sampler_chain_get(chain, i), ctypes.byref(array))
        return [0.0] * N_VOCAB if array.size == 0 else _by_id(array)
    finally:
        llama.llama_sampler_free(chain)


def _by_id(array: llama.llama_token_data_array) -> list[float]:
    logits = [0.0] * N_VOCAB
    for i in range(array.size):
        logits[array.data[i].id] = round(array.data[i].logit, 4)
    return logits


def test_frequency_penalty_is_proportional_to_the_count() -> None:
    logits = apply(SamplingParams(temperature=0, frequency_penalty=0.5), [5, 5, 5, 2])
    assert logits == [0, 0, -0.5, 0, 0, -1.5, 0, 0]


def test_presence_penalty_is_flat_once_present() -> None:
    logits = apply(SamplingParams(temperature=0, presence_penalty=0.75), [5, 5, 5, 2])
    assert logits == [0, 0, -0.75, 0, 0, -0.75, 0, 0]


def test_both_penalties_add_up_and_negative_values_encourage() -> None:
    logits = apply(SamplingParams(temperature=0, presence_penalty=-1.0, frequency_penalty=0.25), [1, 1, 3])
    assert logits == [0, 0.5, 0, 0.75, 0, 0, 0, 0]


def test_penalties_count_the_whole_completion() -> None:
    """The window is the completion budget, not a fixed last-N: the first token still counts at the end."""
    logits = apply(SamplingParams(temperature=0, frequency_penalty=1.0), [4] + [6] * 299, max_tokens=300)
    assert logits[4] == -1.0 and logits[6] == -299.0


def test_logit_bias_comes_before_penalties() -> None:
    logits = apply(SamplingParams(temperature=0, logit_bias={3: 5.0}, presence_penalty=1.0), [3])
    assert logits[3] == 4.0


@pytest.mark.parametrize("field", ["presence_penalty", "frequency_penalty", "temperature", "top_p"])
def test_non_finite_numbers_are_refused_by_name(field: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        build_sampler(SamplingParams(**{field: math.nan}), N_VOCAB, 4)  # type: ignore[arg-type]
    assert refused.value.param == field


def test_a_binding_that_does_not_match_is_an_internal_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def wrong_arity(*args: object) -> object:
        raise TypeError("this function takes at least 5 arguments (4 given)")

    monkeypatch.setattr(sampling_module.llama, "llama_sampler_init_penalties", wrong_arity)
    with pytest.raises(InternalError, match="could not set up sampling"):
        build_sampler(SamplingParams(frequency_penalty=0.5), N_VOCAB, 4)


def test_json_round_trip_keeps_every_field() -> None:
    params = SamplingParams(
        temperature=0.5,
        top_p=0.9,
        seed=7,
        stop=("a", "b"),
        presence_penalty=0.1,
        frequency_penalty=-0.2,
        logit_bias={3: 1.5},
        ignore_eos=True,
    )
    assert SamplingParams.from_json(json.loads(params.to_json(42))) == (params, 42)


def test_json_of_an_old_record_fills_defaults() -> None:
    assert SamplingParams.from_json({"temperature": 0}) == (SamplingParams(temperature=0), None)


@pytest.mark.parametrize(
    ("params", "deterministic"),
    [(SamplingParams(temperature=0), True), (SamplingParams(seed=1), True), (SamplingParams(), False)],
)
def test_deterministic_means_greedy_or_seeded(params: SamplingParams, deterministic: bool) -> None:
    assert params.deterministic is deterministic
