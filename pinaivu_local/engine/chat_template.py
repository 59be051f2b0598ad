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


class _Marks:
    """Markers made for one rendering (private-use characters around a random nonce no client can guess).

    Each message's content and each JSON the template writes (tools, call arguments: client data
    too) is rendered between a pair of them, so the rendered text can be cut back into the template's
    own markup and the client's text, which is never parsed for control tokens.
    """

    def __init__(self) -> None:
        nonce = secrets.token_hex(8)
        self.text = (f"\ue000{nonce}\ue001", f"\ue002{nonce}\ue003")
        self.json = (f"\ue004{nonce}\ue001", f"\ue005{nonce}\ue003")

    def wrap_text(self, text: str) -> str:
        return f"{self.text[0]}{text}{self.text[1]}"

    def unmark(self, value: Any) -> Any:
        """`value` with marked message contents inside it back to their plain text."""
        if isinstance(value, str):
            return value.replace(self.text[0], "").replace(self.text[1], "")
        if isinstance(value, dict):
            return {k: self.unmark(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.unmark(v) for v in value]
        return value


@jinja2.pass_context
def _tojson(context: Any, value: Any, indent: int | None = None, **_: Any) -> str:
    # Jinja's own tojson HTML-escapes; chat templates expect plain JSON.
    marks = context.get(_MARKS)
    if not isinstance(marks, _Marks):
        return json.dumps(value, ensure_ascii=False, indent=indent)
    data = json.dumps(marks.unmark(value), ensure_ascii=False, indent=indent)
    return f"{marks.json[0]}{data}{marks.json[1]}"


_MARKS = "pinaivu_marks"  # the render variable holding _Marks while render_parts runs


class PromptTemplate:
    """Turns messages into a prompt, keeping the template's markup apart from the messages' text.

    Subclasses say how a conversation is rendered (`_render`); the rest is shared.
    """

    def __init__(self) -> None:
        self._trims_content = self._trims()

    def _render(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None, marks: _Marks | None = None
    ) -> str:
        raise NotImplementedError

    def render(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> str:
        """Render messages (role, content) with the assistant's generation prompt appended."""
        return self._render(messages, tools)

    def render_parts(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None
    ) -> list[PromptPart]:
        """The rendered prompt in order, the template's own markup apart from client text.

        Client text is each message's content and every JSON the template writes (tools, tool-call
        arguments); each is rendered between markers (see _Marks), then the rendered text is cut at them.
        """
        marks = _Marks()
        marked = [{**m, "content": marks.wrap_text(m.get("content") or "")} for m in messages]
        rendered = self._render(marked, tools, marks)
        parts: list[PromptPart] = []
        position = 0
        while True:
            found = [(rendered.find(pair[0], position), pair) for pair in (marks.text, marks.json)]
            found = [(start, pair) for start, pair in found if start >= 0]
            if not found:
                break
            start, (opening, closing) = min(found, key=lambda item: item[0])
            end = rendered.find(closing, start)
            if end < 0:
                raise InvalidRequest("The model's chat template cut a message short; send shorter messages.")
            text = rendered[start + len(opening) : end]
            if opening == marks.text[0]:
                text = self._as_template_would(text)
            parts += [PromptPart(rendered[position:start], markup=True), PromptPart(text)]
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

    def _render(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None, marks: _Marks | None = None
    ) -> str:
        try:
            return self._template.render(
                messages=messages,
                tools=tools,  # Meta's templates branch on it: None renders no tool section
                add_generation_prompt=True,
                **({_MARKS: marks} if marks else {}),
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
