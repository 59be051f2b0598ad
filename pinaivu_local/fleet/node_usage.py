"""A node's reported usage, believed only within what the request could have cost.

A key is charged what its request used, so a count from a node is checked before it settles a quota or
is written in a record: whole non-negative numbers, a prompt no longer than the gateway's upper bound on
it, a completion no longer than the budget asked (and no shorter than the chunks of text that arrived,
each at least one token). Anything else is counted by the gateway itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from pinaivu_local.engine.generation import Usage

# A completion may run this many tokens past its budget (an end-of-generation token, a stop string).
COMPLETION_SLACK = 16


@dataclass(frozen=True)
class UsageBounds:
    """What a request could have cost: its prompt's upper bound, and its completion budget."""

    prompt: int
    completion: int

    def check(self, raw: object, counted: int) -> Usage | str:
        """`raw` (a node's `usage` object) as Usage, or why it cannot be believed; `counted`: the chunks
        of text that arrived."""
        if not isinstance(raw, dict):
            return f"usage is {type(raw).__name__}, not an object"
        prompt, completion = raw.get("prompt_tokens"), raw.get("completion_tokens")
        for name, value in (("prompt_tokens", prompt), ("completion_tokens", completion)):
            if type(value) is not int:  # bool is an int to isinstance, and no count
                return f"{name} is {_shown(value)}, not a whole number"
            if value < 0:
                return f"{name} is negative ({value})"
        assert isinstance(prompt, int) and isinstance(completion, int)
        if prompt > self.prompt:
            return f"prompt_tokens {_shown(prompt)} is over the prompt's bound ({self.prompt})"
        if completion > self.completion + COMPLETION_SLACK:
            return f"completion_tokens {_shown(completion)} is over the budget asked ({self.completion})"
        if completion < counted:
            return f"completion_tokens {completion} is under the {counted} chunks of text it sent"
        return Usage(prompt, completion)


def _shown(value: object) -> str:
    return repr(value)[:40]
