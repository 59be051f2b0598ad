"""A test model's turn when it may call a tool or answer: a call when the user spoke last, text after a result.

Offered tools under `tool_choice: "auto"`, a random-weight model almost never opens a call, and now and
then one wakes by chance, so an agent's loop (call, tool, answer) could not be tested without weights.
A test model decides as a scripted agent would: when the conversation ends on the user's turn it calls
one of the offered tools (the call held to their schemas from the first token, as with "required");
when it ends on a tool's result it answers in text, with no call: a short line that ends. Any other last turn keeps the
request's own constraint. Real models decide for themselves.
"""

from __future__ import annotations

from llguidance import LLMatcher

from pinaivu_local.engine.prepared import ChatPrompt, Constraint, PromptSource

# A scripted agent's answer to a tool's result: one short line that ends. A random model's free text
# almost never samples its end-of-turn token, so it would run to the budget, and a client that takes a
# cut answer for a failure (the openai-agents SDK on the Responses API) could not finish its loop.
ANSWER_CHARS = 24  # the engine ends the answer where its grammar is complete


def _answer_grammar() -> str:
    return LLMatcher.grammar_from_lark(f"start: /[A-Za-z0-9 ,.]{{{ANSWER_CHARS}}}/\n")


def scripted_turn(constraint: Constraint | None, source: PromptSource) -> Constraint | None:
    """The constraint a test model follows for `source`: `constraint` unless it leaves the call to the model."""
    if constraint is None or constraint.auto_call is None or not isinstance(source, ChatPrompt):
        return constraint
    last = source.messages[-1].get("role") if source.messages else None
    if last == "user":
        return Constraint(constraint.auto_call, param=constraint.param)
    if last == "tool":
        return Constraint(_answer_grammar(), param=constraint.param)
    return constraint
