"""What `make bench` measures: a few workloads, each on its model, every server taking the same load."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

ModelKind = Literal["1b", "tiny"]


@dataclass(frozen=True)
class Scenario:
    """One workload: the model, the concurrencies, the prompt and how much to generate."""

    name: str
    title: str
    model: ModelKind  # "1b": Llama-3.2-1B-shaped Q4_K_M; "tiny": the tiny F16 test model (decode nearly free)
    concurrency: tuple[int, ...]
    prompt_tokens: int
    max_tokens: int
    parallel: int  # sequences (ours) and slots (llama-server)
    n_ctx: int
    # > 0: chats whose system prompt of about this many tokens is shared by the round's streams
    # (a new one each round, so nothing is cached from the round before); 0: distinct text prompts.
    shared_prefix_tokens: int = 0


STANDARD: tuple[Scenario, ...] = (
    Scenario("1b", "1B-shaped Q4_K_M", "1b", (1, 8), prompt_tokens=40, max_tokens=32, parallel=8, n_ctx=2048),
    Scenario(
        "tiny-f16",
        "tiny F16 (decode nearly free, as on a GPU)",
        "tiny",
        (1, 32),
        prompt_tokens=40,
        max_tokens=64,
        parallel=32,
        n_ctx=4096,
    ),
    Scenario(
        "shared-prompt",
        "8 chats sharing a 1,000-token system prompt, 1B-shaped Q4_K_M",
        "1b",
        (8,),
        prompt_tokens=40,
        max_tokens=32,
        parallel=8,
        # room for llama-server's 8 slots to hold the prefix each
        n_ctx=10240,
        shared_prefix_tokens=1000,
    ),
    Scenario(
        "shared-prompt-tiny",
        "8 chats sharing a 1,000-token system prompt, tiny F16",
        "tiny",
        (8,),
        prompt_tokens=40,
        max_tokens=64,
        parallel=8,
        n_ctx=10240,
        shared_prefix_tokens=1000,
    ),
)

NAMES = tuple(s.name for s in STANDARD)

# Context cells per sequence beyond its prompt and answer (a chat template's tokens).
CTX_MARGIN = 16
CTX_STEP = 256


def select(
    names: tuple[str, ...],
    *,
    tiny: bool = False,
    concurrency: tuple[int, ...] | None = None,
    prompt_tokens: int | None = None,
    max_tokens: int | None = None,
    parallel: int | None = None,
) -> tuple[Scenario, ...]:
    """The named standard scenarios, with the options given on the command line applied to each.

    `tiny` runs every one on the tiny model with a short shared prompt: a check of the machinery.
    """
    chosen = []
    for scenario in STANDARD:
        if scenario.name not in names:
            continue
        if tiny:
            scenario = dataclasses.replace(
                scenario,
                model="tiny",
                n_ctx=min(scenario.n_ctx, 4096),
                shared_prefix_tokens=min(scenario.shared_prefix_tokens, 200),
            )
        scenario = dataclasses.replace(
            scenario,
            concurrency=concurrency or scenario.concurrency,
            prompt_tokens=prompt_tokens or scenario.prompt_tokens,
            max_tokens=max_tokens or scenario.max_tokens,
            parallel=parallel or scenario.parallel,
        )
        chosen.append(dataclasses.replace(scenario, n_ctx=max(scenario.n_ctx, context_needed(scenario))))
    return tuple(chosen)


def context_needed(scenario: Scenario) -> int:
    """The context that holds every sequence at once (llama-server's slots each keep the shared prefix)."""
    per_sequence = scenario.shared_prefix_tokens + scenario.prompt_tokens + scenario.max_tokens + CTX_MARGIN
    return -(-scenario.parallel * per_sequence // CTX_STEP) * CTX_STEP
