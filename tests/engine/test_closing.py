"""Test models close what they open: the closer chosen per step, and a test model against a real one on one schema."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import jsonschema
import numpy as np
import numpy.typing as npt
import pytest

from pinaivu_local.catalog import Catalog, ModelSpec
from pinaivu_local.engine.closing import Closers, ValueCloser
from pinaivu_local.engine.grammars import json_constraint
from pinaivu_local.engine.model_pool import EngineOptions, ModelPool
from pinaivu_local.engine.prepared import ChatPrompt
from pinaivu_local.engine.sampling import SamplingParams
from tests.helpers import TinyModels

# A vocabulary of single bytes (token = byte) and an end-of-output token 300, enough for the choices.
EOS = 300
CLOSERS = Closers(in_string=tuple((ord(c), ord(c)) for c in '"Z@.:DS'), outside=(ord("}"), ord("]"), EOS, ord(",")))
PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}


def mask(allowed: str, *, eos: bool = False) -> npt.NDArray[np.int32]:
    """llguidance's bits for the tokens of `allowed` (and the end of output)."""
    bits = np.zeros(320, dtype=np.uint8)
    bits[[ord(c) for c in allowed] + ([EOS] if eos else [])] = 1
    return np.packbits(bits, bitorder="little").view(np.int32)


def test_outside_a_string_it_ends_the_innermost_structure_first() -> None:
    closer = ValueCloser(CLOSERS)
    closer.feed(b'{"a": [1')
    assert closer.pick(mask("0123456789,]}")) == ord("}")
    assert closer.pick(mask("0123456789,]")) == ord("]")
    assert closer.pick(mask("0123456789,", eos=True)) == EOS
    assert closer.pick(mask("0123456789,")) == ord(",")
    assert closer.pick(mask("0123456789")) is None  # a digit the value still needs: the model's choice


def test_inside_a_string_the_quote_wins_and_escapes_are_followed() -> None:
    closer = ValueCloser(CLOSERS)
    closer.feed(b'{"a": "x}')
    assert closer.pick(mask('"}]Z')) == ord('"')  # `}` is text here
    closer.feed(b'\\"')  # an escaped quote does not end it
    assert closer.pick(mask('"}')) == ord('"')
    closer.feed(b'"')
    assert closer.pick(mask('"}')) == ord("}")


def test_a_format_closer_is_taken_once_a_string() -> None:
    closer = ValueCloser(CLOSERS)
    closer.feed(b'{"u": "')
    assert closer.pick(mask("Z.:a")) == ord("Z")
    closer.feed(b"Z")
    assert closer.pick(mask("Z.:a")) == ord(".")  # never Z again in this string: Z.Z.Z... would not end
    closer.feed(b".")
    assert closer.pick(mask("Z.:a")) == ord(":")
    closer.feed(b":")
    assert closer.pick(mask("Z.:a")) is None
    closer.feed(b'a", "v": "')  # a new string: every closer again
    assert closer.pick(mask("Z.:a")) == ord("Z")


@pytest.fixture(scope="module")
def pool(tiny_models: TinyModels, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelPool]:
    """The same tiny model twice: as a test model and as a real one."""
    specs = tuple(
        ModelSpec(id=name, source=None, file=tiny_models.f16, n_ctx=1024, n_gpu_layers=0, parallel=2, test_model=test)
        for name, test in (("test", True), ("real", False))
    )
    opened = ModelPool(
        Catalog(file=tmp_path_factory.mktemp("c") / "models.toml", models=specs),
        EngineOptions(n_threads=1, max_queue=4, weight_repack=False),
    )
    opened.open()
    yield opened
    opened.close()


def generate(pool: ModelPool, model: str, seed: int) -> tuple[str, str | None]:
    engine = pool.get(model)
    constraint = json_constraint(PERSON, param="response_format")
    source = ChatPrompt([{"role": "user", "content": "A person, please."}])
    prepared = engine.prepare(source, SamplingParams(temperature=1.0, seed=seed), 120, constraint=constraint)

    async def go() -> tuple[str, str | None]:
        deltas = [d async for d in engine.start(prepared)]
        return "".join(d.text for d in deltas), deltas[-1].finish_reason

    return asyncio.run(go())


@pytest.mark.parametrize("seed", range(3))
def test_a_test_model_closes_what_a_real_one_leaves_open(pool: ModelPool, seed: int) -> None:
    text, reason = generate(pool, "test", seed)
    assert reason == "stop"
    jsonschema.validate(json.loads(text), PERSON)
    # The same weights as a real model: untouched, the integer never ends (the 7777...).
    text, reason = generate(pool, "real", seed)
    assert reason == "length" and not text.endswith("}")


def test_the_tiny_vocabulary_has_every_closer(pool: ModelPool) -> None:
    grammars = pool.get("test")._scheduler.grammars
    closers = Closers.of(grammars._tokenizer_now())
    assert len(closers.in_string) == 7 and len(closers.outside) == 4
