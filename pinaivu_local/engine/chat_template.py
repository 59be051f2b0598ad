"""Renders a model's chat template (`tokenizer.chat_template`, Jinja) into a prompt."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from pinaivu_local.errors import InvalidRequest, ModelFileError


class _TemplateRaised(Exception):
    """`raise_exception(...)` called by the template: the messages break its rules."""


def _raise_exception(message: str) -> None:
    raise _TemplateRaised(message)


def _tojson(value: Any, indent: int | None = None, **_: Any) -> str:
    # Jinja's own tojson HTML-escapes; chat templates expect plain JSON.
    return json.dumps(value, ensure_ascii=False, indent=indent)


class ChatTemplate:
    """A compiled chat template plus the special-token strings it refers to."""

    def __init__(self, source: str, *, bos_token: str, eos_token: str, origin: str) -> None:
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.filters["tojson"] = _tojson
        env.globals["raise_exception"] = _raise_exception
        env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
        try:
            self._template = env.from_string(source)
        except jinja2.TemplateError as exc:
            raise ModelFileError(f"{origin}: its chat template does not compile ({exc})") from None
        self._bos = bos_token
        self._eos = eos_token

    def render(self, messages: list[dict[str, str]]) -> str:
        """Render messages (role, content) with the assistant's generation prompt appended."""
        try:
            return self._template.render(
                messages=messages,
                tools=None,  # Meta's templates branch on it; we do not offer tool calling
                add_generation_prompt=True,
                bos_token=self._bos,
                eos_token=self._eos,
                date_string=datetime.now().strftime("%d %b %Y"),
            )
        except _TemplateRaised as exc:
            raise InvalidRequest(f"The model's chat template rejected the messages: {exc}", param="messages") from None
        except jinja2.TemplateError as exc:
            raise InvalidRequest(
                f"The model's chat template could not render these messages ({exc}).", param="messages"
            ) from None
