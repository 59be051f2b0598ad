"""Constrained decoding on a real tiny model: masks beat any bias, lazy grammars wake, pre-emption keeps state."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from llguidance import LLMatcher

from pinaivu_local.catalog import Catalog, ModelSpec
from pinaivu_local.engine.generation import Delta
from pinaivu_local.engine.grammars import json_constraint, tool_call_constraint
from pinaivu_local.engine.model_pool import EngineOptions, ModelEngine, ModelPool
from pinaivu_local.engine.prepared import ChatPrompt, Constraint, TextPrompt
from pinaivu_local.engine.sampling import SamplingParams
from pinaivu_local.errors import InvalidRequest
from tests.helpers import TinyModels

NO_EOG = {321: -100.0, 324: -100.0, 325: -100.0}


def lark(grammar: str) -> Constraint:
    return Constraint(LLMatcher.grammar_from_lark(grammar))


@pytest.fixture(scope="module")
def engine(tiny_models: TinyModels, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelEngine]:
    spec = ModelSpec(id="tiny", source=None, file=tiny_models.f16, n_ctx=2048, n_gpu_layers=0, parallel=4)
    pool = ModelPool(
        Catalog(file=tmp_path_factory.mktemp("c") / "models.toml", models=(spec,)),
        EngineOptions(n_threads=1, max_queue=4, weight_repack=False),
    )
    pool.open()
    yield pool.get("tiny")
    pool.close()


async def run(engine: ModelEngine, constraint: Constraint, max_tokens: int = 64, **params: object) -> list[Delta]:
    source = ChatPrompt([{"role": "user", "content": "hello"}])
    prepared = engine.prepare(source, SamplingParams(**params), max_tokens, constraint=constraint)  # type: ignore[arg-type]
    return [d async for d in engine.start(prepared)]


def text_of(deltas: list[Delta]) -> str:
    return "".join(d.text for d in deltas)


def token_of(engine: ModelEngine, text: str) -> int:
    tokens = engine._model.tokenize(text, add_bos=False)
    assert len(tokens) == 1
    return tokens[0]


@pytest.mark.parametrize("seed", range(5))
def test_a_masked_token_is_never_sampled(engine: ModelEngine, seed: int) -> None:
    # "c" pushed as far as logit_bias goes, at a high temperature: the mask still wins.
    bias = {token_of(engine, "c"): 100.0}
    deltas = asyncio.run(run(engine, lark('start: "ab" /[ab]{4}/'), temperature=2.0, seed=seed, logit_bias=bias))
    assert re.fullmatch("ab[ab]{4}", text_of(deltas))
    assert deltas[-1].finish_reason == "stop"  # the grammar is complete: the sequence ends there


def test_unconstrained_the_bias_wins(engine: ModelEngine) -> None:
    """The control for the test above: without the mask, the biased token is what comes out."""
    bias = {token_of(engine, "c"): 100.0}
    source = ChatPrompt([{"role": "user", "content": "hello"}])
    prepared = engine.prepare(source, SamplingParams(temperature=0, logit_bias=bias), 4)

    async def go() -> list[Delta]:
        return [d async for d in engine.start(prepared)]

    assert text_of(asyncio.run(go())) == "cccc"


def test_json_schema_output_is_valid(engine: ModelEngine) -> None:
    schema = {
        "type": "object",
        "properties": {"n": {"type": "integer", "minimum": 0, "maximum": 9}, "ok": {"type": "boolean"}},
        "required": ["n", "ok"],
        "additionalProperties": False,
    }
    for seed in range(3):
        deltas = asyncio.run(run(engine, json_constraint(schema, param="response_format"), seed=seed))
        value = json.loads(text_of(deltas))
        assert set(value) == {"n", "ok"} and 0 <= value["n"] <= 9
        assert deltas[-1].finish_reason == "stop"


def test_a_cut_json_ends_with_length(engine: ModelEngine) -> None:
    schema = {"type": "object", "properties": {"t": {"type": "string", "minLength": 40}}, "required": ["t"]}
    deltas = asyncio.run(run(engine, json_constraint(schema, param="response_format"), max_tokens=6))
    assert deltas[-1].finish_reason == "length"


def test_a_lazy_call_wakes_at_the_python_tag(engine: ModelEngine) -> None:
    parameters = {
        "type": "object",
        "properties": {"x": {"enum": ["a", "b"]}},
        "required": ["x"],
        "additionalProperties": False,
    }
    constraint = tool_call_constraint([("pick", parameters)], lazy=True)
    # Push the model to open with <|python_tag|>; from there the grammar must hold it to a whole call.
    tag = engine._model.tokenize("<|python_tag|>", add_bos=False, special=True)
    assert len(tag) == 1
    bias = {tag[0]: 100.0, **NO_EOG}
    deltas = asyncio.run(run(engine, constraint, max_tokens=60, temperature=0, logit_bias=bias))
    call = json.loads(text_of(deltas))  # the tag is a control token: no text
    assert call["name"] == "pick" and call["parameters"]["x"] in ("a", "b")
    assert deltas[-1].finish_reason == "stop"


@pytest.mark.parametrize(
    ("opening", "wakes"),
    [('  {"name"', True), ('{"name": "pick"', True), ('{"x": 1}', False), ("hello {", False), ("{", None)],
)
def test_a_lazy_call_wakes_only_at_a_calls_opening(engine: ModelEngine, opening: str, wakes: bool | None) -> None:
    grammars = engine._scheduler.grammars
    guide = grammars.guide(tool_call_constraint([("pick", {"type": "object"})], lazy=True))
    for token in engine._model.tokenize(opening, add_bos=False):
        guide.accept(token)
    assert guide.active is bool(wakes)
    assert (guide._opening is not None) is (wakes is None)  # None: still undecided


def test_a_lazy_call_that_never_opens_leaves_text_free(engine: ModelEngine) -> None:
    constraint = tool_call_constraint([("pick", {"type": "object"})], lazy=True)
    bias = {token_of(engine, "c"): 100.0}
    deltas = asyncio.run(run(engine, constraint, max_tokens=5, temperature=0, logit_bias=bias))
    assert text_of(deltas) == "ccccc" and deltas[-1].finish_reason == "length"


def test_an_unenforceable_schema_is_refused_naming_it(engine: ModelEngine) -> None:
    schema = {"type": "array", "uniqueItems": True}
    with pytest.raises(InvalidRequest, match="uniqueItems") as caught:
        engine.prepare(
            TextPrompt("x"), SamplingParams(), 4, constraint=json_constraint(schema, param="response_format")
        )
    assert caught.value.param == "response_format"


def test_preemption_keeps_each_matcher_in_step(
    tiny_models: TinyModels, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Four constrained sequences that cannot all fit a 256-token cache: re-fed, their grammars stay right."""
    spec = ModelSpec(id="small", source=None, file=tiny_models.f16, n_ctx=256, n_gpu_layers=0, parallel=4)
    small = ModelPool(Catalog(file=tmp_path / "m.toml", models=(spec,)), EngineOptions(1, 8, False))
    small.open()
    constraint = lark("start: /[a-z]{90}/")
    try:
        engine = small.get("small")
        texts = [f"prompt number {i} " * (i + 1) for i in range(4)]

        async def one(text: str) -> str:
            prepared = engine.prepare(TextPrompt(text), SamplingParams(temperature=0), 120, constraint=constraint)
            return text_of([d async for d in engine.start(prepared)])

        alone = [asyncio.run(one(t)) for t in texts]

        async def together() -> list[str]:
            return await asyncio.gather(*[one(t) for t in texts])

        with caplog.at_level(logging.DEBUG, logger="pinaivu_local.engine.scheduler"):
            crowd = asyncio.run(together())
        assert "pre-empting" in caplog.text
        assert crowd == alone
        assert all(re.fullmatch("[a-z]{90}", text) for text in crowd)
    finally:
        small.close()
