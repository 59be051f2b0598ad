"""Renders a model's chat template (`tokenizer.chat_template`, Jinja) into a prompt."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from pinaivu_local.errors import InvalidRequest, ModelFileError


@dataclass(frozen=True)
class PromptPart:
    """A piece of a rendered prompt: the template's markup (control tokens allowed) or a message's text."""

    text: str
    markup: bool = False


class _TemplateRaised(Exception):
    """`raise_exception(...)` called by the template: the messages break its rules."""


def _raise_exception(message: str) -> None:
    raise _TemplateRaised(message)


def _tojson(value: Any, indent: int | None = None, **_: Any) -> str:
    # Jinja's own tojson HTML-escapes; chat templates expect plain JSON.
    return json.dumps(value, ensure_ascii=False, indent=indent)


class PromptTemplate:
    """Turns messages into a prompt, keeping the template's markup apart from the messages' text.

    Subclasses say how a conversation is rendered (`_render`); the rest is shared.
    """

    def __init__(self) -> None:
        self._trims_content = self._trims()

    def _render(self, messages: list[dict[str, str]]) -> str:
        raise NotImplementedError

    def render(self, messages: list[dict[str, str]]) -> str:
        """Render messages (role, content) with the assistant's generation prompt appended."""
        return self._render(messages)

    def render_parts(self, messages: list[dict[str, str]]) -> list[PromptPart]:
        """The rendered prompt in order, the template's own markup apart from the messages' text.

        Each content is rendered between two markers made for this call (private-use characters
        around a random nonce, which no client can guess), then the rendered text is cut at them.
        """
        nonce = secrets.token_hex(8)
        opening, closing = f"\ue000{nonce}\ue001", f"\ue002{nonce}\ue003"
        marked = [{**m, "content": f"{opening}{m['content']}{closing}"} for m in messages]
        rendered = self._render(marked)
        parts: list[PromptPart] = []
        position = 0
        while (start := rendered.find(opening, position)) >= 0:
            end = rendered.find(closing, start)
            if end < 0:
                raise InvalidRequest("The model's chat template cut a message short; send shorter messages.")
            text = rendered[start + len(opening) : end]
            parts += [PromptPart(rendered[position:start], markup=True), PromptPart(self._as_template_would(text))]
            position = end + len(closing)
        parts.append(PromptPart(rendered[position:], markup=True))
        return parts

    def _as_template_would(self, text: str) -> str:
        # A template's `| trim` sees the markers, not the text: apply it here instead.
        return text.strip() if self._trims_content else text

    def _trims(self) -> bool:
        """Whether the template strips the whitespace around a message's content (Llama 3's does)."""
        try:
            return "  probe  " not in self._render([{"role": "user", "content": "  probe  "}])
        except InvalidRequest:
            return False


class ChatTemplate(PromptTemplate):
    """A compiled Jinja chat template (the GGUF's own) plus the special-token strings it refers to."""

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
        super().__init__()

    def _render(self, messages: list[dict[str, str]]) -> str:
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
