"""The bench's scenarios: options from the command line, and a context that holds every sequence."""

from __future__ import annotations

from pinaivu_local.bench.scenarios import STANDARD, context_needed, select


def test_standard_scenarios_keep_their_context() -> None:
    """The standard scenarios already fit; the growth rule must not change what they measure."""
    for scenario in STANDARD:
        assert select((scenario.name,)) == (scenario,)
        assert context_needed(scenario) <= scenario.n_ctx


def test_more_sequences_get_a_context_that_holds_them_all() -> None:
    """--parallel 32 on the 1B scenario: 32 x (40 + 32 + margin) cells, above its own 2048."""
    (scenario,) = select(("1b",), concurrency=(1, 32), parallel=32)
    assert scenario.parallel == 32 and scenario.concurrency == (1, 32)
    assert scenario.n_ctx >= 32 * (scenario.prompt_tokens + scenario.max_tokens) > 2048
    assert scenario.n_ctx % 256 == 0


def test_longer_answers_grow_the_shared_prompt_context() -> None:
    """Each of llama-server's slots holds its own copy of the shared prefix: the context counts it per slot."""
    (scenario,) = select(("shared-prompt",), max_tokens=500)
    assert scenario.n_ctx >= 8 * (1000 + 40 + 500) > 10240


def test_tiny_shrinks_the_context_only_as_far_as_it_fits() -> None:
    (scenario,) = select(("tiny-f16",), tiny=True, parallel=64)
    assert scenario.model == "tiny"
    assert scenario.n_ctx >= 64 * (40 + 64) > 4096
