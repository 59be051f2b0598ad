"""Llama 3's chat template, as the engine renders it for GGUFs that carry none."""

from __future__ import annotations

from pinaivu_local.engine.chat_template import ChatTemplate
from pinaivu_local.tiny_models.llama3_template import LLAMA3_TEMPLATE


def test_turns_and_generation_prompt() -> None:
    template = ChatTemplate(LLAMA3_TEMPLATE, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>", origin="t")
    prompt = template.render([{"role": "system", "content": " be brief "}, {"role": "user", "content": "hi"}])
    assert prompt.startswith(
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n"
    )
    assert prompt.endswith(
        "\n\nbe brief<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )
