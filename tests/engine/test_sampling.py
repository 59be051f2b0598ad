"""The sampler chain on hand-made logits (OpenAI's penalty arithmetic, refusals that name the field), and the
greedy argmax on real ones."""

from __future__ import annotations

import ctypes
import json
import math
from collections.abc import Iterator

import llama_cpp.llama_cpp as llama
import numpy as np
import pytest

import pinaivu_local.engine.sampling as sampling_module
from pinaivu_local.engine.batch import TokenBatch
from pinaivu_local.engine.llama_model import LlamaModel, LoadOptions
from pinaivu_local.engine.sampling import SamplingParams, argmax_tokens, build_sampler
from pinaivu_local.errors import InternalError, InvalidRequest
from tests.helpers import TinyModels

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


def test_plain_greedy_is_greedy_with_untouched_logits() -> None:
    assert SamplingParams(temperature=0).plain_greedy
    assert not SamplingParams(temperature=0.7).plain_greedy
    assert not SamplingParams(temperature=0, logit_bias={3: 1.0}).plain_greedy
    assert not SamplingParams(temperature=0, presence_penalty=0.5).plain_greedy
    assert not SamplingParams(temperature=0, frequency_penalty=0.5).plain_greedy


def test_argmax_tokens_pick_what_the_greedy_sampler_picks(tiny_models: TinyModels) -> None:
    """On real logits of a real batch: every output, contiguous rows and a subset with gaps, equal to
    llama.cpp's greedy sampler, which keeps the first of equal logits, as argmax does."""
    model = LlamaModel(tiny_models.f16, LoadOptions(n_gpu_layers=0))
    params = llama.llama_context_default_params()
    params.n_ctx, params.n_batch, params.n_ubatch, params.n_seq_max = 512, 256, 256, 6
    ctx = llama.llama_init_from_model(model.ptr, params)
    greedy = llama.llama_sampler_init_greedy()
    try:
        batch = TokenBatch(256)
        batch.clear()
        outputs = [
            batch.add(model.tokenize(f"prompt {i} " * (i + 1), add_bos=True), 0, i, logits=True) for i in range(6)
        ]
        assert llama.llama_decode(ctx, batch.seal()) == 0
        expected = [llama.llama_sampler_sample(greedy, ctx, index) for index in outputs]
        assert len(set(expected)) > 1  # distinct prompts, distinct answers: the rows are not mixed up
        assert argmax_tokens(ctx, outputs, model.n_vocab) == expected
        gaps = outputs[::2]
        assert argmax_tokens(ctx, gaps, model.n_vocab) == expected[::2]
        assert argmax_tokens(ctx, [], model.n_vocab) == []
        # a row with two equal maxima: the first wins, in both
        row = np.ctypeslib.as_array(llama.llama_get_logits_ith(ctx, outputs[0]), shape=(model.n_vocab,))
        row[7] = row[11] = row.max() + 1.0
        assert (
            argmax_tokens(ctx, outputs[:1], model.n_vocab)
            == [7]
            == [llama.llama_sampler_sample(greedy, ctx, outputs[0])]
        )
    finally:
        llama.llama_sampler_free(greedy)
        llama.llama_free(ctx)
        model.close()
