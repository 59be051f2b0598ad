"""Rendering chat templates: helpers real templates use, and template errors as 400s."""

from __future__ import annotations

import pytest

from pinaivu_local.engine.chat_template import ChatTemplate
from pinaivu_local.errors import InvalidRequest, ModelFileError


def make(source: str) -> ChatTemplate:
    return ChatTemplate(source, bos_token="<s>", eos_token="</s>", origin="test.gguf")


def test_bos_and_generation_prompt() -> None:
    tpl = make(
        "{{ bos_token }}{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}"
        "{% if add_generation_prompt %}[assistant]{% endif %}"
    )
    assert tpl.render([{"role": "user", "content": "hi"}]) == "<s>[user]hi[assistant]"


def test_tojson_does_not_html_escape() -> None:
    assert make("{{ messages[0].content | tojson }}").render([{"role": "user", "content": "<a&b>"}]) == '"<a&b>"'


def test_strftime_now_is_available() -> None:
    assert len(make("{{ strftime_now('%Y') }}").render([{"role": "user", "content": ""}])) == 4


def test_raise_exception_becomes_a_400() -> None:
    tpl = make("{% if messages[0].role != 'user' %}{{ raise_exception('first message must be user') }}{% endif %}")
    with pytest.raises(InvalidRequest, match="first message must be user"):
        tpl.render([{"role": "assistant", "content": "x"}])


def test_broken_template_is_a_model_file_error() -> None:
    with pytest.raises(ModelFileError, match=r"test\.gguf"):
        make("{% for %}")
