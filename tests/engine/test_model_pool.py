"""ModelPool and ModelEngine: models found by id, and a request sized once, before it is queued."""

from __future__ import annotations

import pytest

from pinaivu_local.engine.model_pool import ModelPool
from pinaivu_local.engine.prepared import ChatPrompt, TextPrompt, TokenPrompt
from pinaivu_local.engine.sampling import SamplingParams
from pinaivu_local.errors import ContextLengthExceeded, InvalidRequest, ModelNotFound


def test_prepare_sizes_the_budget(pool: ModelPool) -> None:
    engine = pool.get("tiny")
    params = SamplingParams()
    assert engine.prepare(TokenPrompt([65] * 100), params, None).max_tokens == engine.n_ctx - 100
    prepared = engine.prepare(TokenPrompt([65] * 100), params, 50)
    assert (prepared.max_tokens, prepared.reserved_tokens, prepared.model_id) == (50, 150, "tiny")
    with pytest.raises(ContextLengthExceeded) as caught:
        engine.prepare(TokenPrompt([65] * 1000), params, 100)
    assert caught.value.param == "prompt"
    with pytest.raises(ContextLengthExceeded):
        engine.prepare(TokenPrompt([65] * engine.n_ctx), params, None)
    with pytest.raises(ContextLengthExceeded) as caught:
        engine.prepare(ChatPrompt([{"role": "user", "content": "x" * 3000}]), params, None)
    assert caught.value.param == "messages"


def test_prepare_checks_token_ids_against_the_vocabulary(pool: ModelPool) -> None:
    engine = pool.get("tiny")
    with pytest.raises(InvalidRequest) as caught:
        engine.prepare(TokenPrompt([1, 10**6]), SamplingParams(), 4)
    assert caught.value.param == "prompt"
    with pytest.raises(InvalidRequest) as caught:
        engine.prepare(TextPrompt("hi"), SamplingParams(logit_bias={-1: 1.0}), 4)
    assert caught.value.param == "logit_bias"


def test_a_request_prepared_for_another_model_is_refused(pool: ModelPool) -> None:
    prepared = pool.get("tiny").prepare(TextPrompt("hi"), SamplingParams(), 4)
    with pytest.raises(ValueError, match="prepared for tiny"):
        pool.get("slow").start(prepared)


def test_unknown_model(pool: ModelPool) -> None:
    with pytest.raises(ModelNotFound) as caught:
        pool.get("Tiny!")
    assert "Did you mean `tiny`?" in caught.value.message


def test_a_text_that_cannot_fit_is_refused_before_it_is_tokenized(
    pool: ModelPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = pool.get("tiny")

    def never(*args: object, **kwargs: object) -> list[int]:
        raise AssertionError("tokenized a text that cannot fit")

    monkeypatch.setattr(engine._model, "tokenize", never)
    monkeypatch.setattr(engine._model, "tokenize_prompt", never)
    hostile = "<|eot_id|>" * 80_000
    with pytest.raises(ContextLengthExceeded, match="at least"):
        engine.prepare(TextPrompt(hostile), SamplingParams(), None)
    with pytest.raises(ContextLengthExceeded, match="at least") as caught:
        engine.prepare(ChatPrompt([{"role": "user", "content": hostile}]), SamplingParams(), 16)
    assert caught.value.param == "messages"


def test_completion_prompts_are_plain_text(pool: ModelPool) -> None:
    engine = pool.get("tiny")
    prepared = engine.prepare(TextPrompt("a<|eot_id|>b"), SamplingParams(), 4)
    assert 324 not in prepared.prompt and len(prepared.prompt) > 4
    assert engine.prepare(TokenPrompt([320, 324]), SamplingParams(), 4).prompt == [320, 324]  # ids stay ids
