"""How long an idle engine waits for requests that arrive together, so that they share its first step.

Requests sent at once reach the engine one by one: each spends a millisecond or two on the event loop
(HTTP, the key, validation, tokenizing) before it is submitted. An idle engine that started its step
at the first would prefill that one alone, and the others would wait for that whole step before
theirs began: on a CPU, where a 1B model prefills 40 tokens in half a second, that is most of their
time to first token. So an idle engine given work waits a moment for more, as long as requests keep
coming, but never more than a small share of the step it is about to run. Where steps are short (a
GPU, a small model) the share is below what waiting costs, and the engine starts at once.
"""

from __future__ import annotations

from dataclasses import dataclass

GATHER_SHARE = 0.01  # of the expected step time: the longest wait for the next arrival
GATHER_MAX_S = 0.025  # the longest gathering in all, however long the step
GATHER_MIN_S = 0.0005  # shorter waits are not worth a wake-up: start at once
# Steps with fewer tokens say little about the cost of a prompt token: a step of a few tokens costs
# about what one does (the weights are read once per step), which would count each of them a whole
# step (8 streams of the 1B model on a CPU: 25 ms a token against 8 in a prefill).
MIN_TOKENS = 32
SMOOTHING = 0.2  # weight of the newest step in the running average


@dataclass
class StepClock:
    """The cost of a token in a batched step (mostly prompt), as the engine's own steps measured it."""

    per_token_s: float | None = None

    def observe(self, tokens: int, seconds: float) -> None:
        """Fold in one `llama_decode` of `tokens` tokens that took `seconds`."""
        if tokens < MIN_TOKENS or seconds <= 0:
            return
        sample = seconds / tokens
        before = self.per_token_s
        self.per_token_s = sample if before is None else (1 - SMOOTHING) * before + SMOOTHING * sample

    def gather_window(self, tokens: int) -> float:
        """How long to wait for another arrival before a step that computes `tokens` prompt tokens (not
        counting those its cache already holds); 0: start now."""
        if self.per_token_s is None:
            return 0.0
        window = min(GATHER_MAX_S, GATHER_SHARE * tokens * self.per_token_s)
        return window if window >= GATHER_MIN_S else 0.0
