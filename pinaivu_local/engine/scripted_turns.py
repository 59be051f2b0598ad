"""A test model's turn when it may call a tool or answer: a call when the user spoke last, text after a result.

Offered tools under `tool_choice: "auto"`, a random-weight model almost never opens a call, and now and
then one wakes by chance, so an agent's loop (call, tool, answer) could not be tested without weights.
A test model decides as a scripted agent would: when the conversation ends on the user's turn it calls
one of the offered tools (the call held to their schemas from the first token, as with "required");
when it ends on a tool's result it answers in text, with no call. Any other last turn keeps the
request's own constraint. Real models decide for themselves.
"""

from __future__ import annotations

from pinaivu_local.engine.prepared import ChatPrompt, Constraint, PromptSource


def scripted_turn(constraint: Constraint | None, source: PromptSource) -> Constraint | None:
    """The constraint a test model follows for `source`: `constraint` unless it leaves the call to the model."""
    if constraint is None or constraint.auto_call is None or not isinstance(source, ChatPrompt):
        return constraint
    last = source.messages[-1].get("role") if source.messages else None
    if last == "user":
        return Constraint(constraint.auto_call, param=constraint.param)
    if last == "tool":
        return None
    return constraint
