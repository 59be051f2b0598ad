"""The llama-server comparison's own half on the real model: its tokens are the answer's, its model the wheel's."""

from __future__ import annotations

from pinaivu_local.bench.same_text import CONVERSATIONS, ask, smollm2
from tests.helpers import TEST_KEY, RunningServer, smollm2_path


def test_an_answer_is_its_tokens(real_server: RunningServer) -> None:
    answer = ask(real_server.base_url, TEST_KEY, "smollm2:135m", CONVERSATIONS[0])
    assert answer.finish_reason == "stop" and "Paris" in answer.text
    assert b"".join(answer.tokens).decode() == answer.text


def test_the_default_model_is_the_wheels() -> None:
    assert smollm2() == smollm2_path() and smollm2().is_file()
