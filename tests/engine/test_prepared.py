"""Sizing a prompt before it is rendered: every byte the template writes, at any nesting."""

from __future__ import annotations

from pinaivu_local.engine.prepared import ChatPrompt, TextPrompt, TokenPrompt, data_bytes, nesting_depth, text_bytes


def test_a_chat_counts_content_call_arguments_and_tools() -> None:
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": {"q": "é" * 10, "n": 3}}}
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "", "tool_calls": [call]}]
    tools = [{"type": "function", "function": {"name": "g", "parameters": {}}}]
    # content 2, name 1, arguments: keys "q" and "n" (2), 20 bytes of é, one number (1); tools: their strings
    assert text_bytes(ChatPrompt(messages)) == 2 + 1 + 2 + 20 + 1
    assert text_bytes(ChatPrompt(messages, tools)) == 26 + data_bytes(tools)
    assert data_bytes(tools) == len("typefunctionfunctionnamegparameters")


def test_text_and_token_prompts() -> None:
    assert text_bytes(TextPrompt("héllo")) == 6
    assert text_bytes(TokenPrompt([1, 2, 3])) == 0


def test_any_nesting_is_measured_without_recursion() -> None:
    deep: object = 1
    for _ in range(100_000):  # far past Python's recursion limit
        deep = [deep]
    assert nesting_depth(deep) == 100_000
    assert data_bytes(deep) == 1
    assert nesting_depth({"a": [1, {"b": 2}]}) == 3 and nesting_depth("x") == 0
