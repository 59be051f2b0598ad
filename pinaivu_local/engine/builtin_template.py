"""llama.cpp's built-in chat templates, for a GGUF that carries none: which one fits, and rendering with it.

A model is never prompted in another family's markup: the template is chosen by the markup tokens
its vocabulary has (they are what the model was trained on), then by its architecture; when
nothing fits, chat is refused with a clear error and text completions still work.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable

import llama_cpp.llama_cpp as llama

from pinaivu_local.engine.chat_template import PromptTemplate
from pinaivu_local.errors import InvalidRequest

# Built-in template -> the control tokens its markup needs; a vocabulary with all of them fits it.
_MARKUP: dict[str, tuple[str, ...]] = {
    "llama3": ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
    "phi4": ("<|im_start|>", "<|im_sep|>", "<|im_end|>"),  # ChatML's tokens plus its own: before ChatML
    "chatml": ("<|im_start|>", "<|im_end|>"),
    "gemma": ("<start_of_turn>", "<end_of_turn>"),
    "phi3": ("<|user|>", "<|assistant|>", "<|end|>"),
    "command-r": ("<|START_OF_TURN_TOKEN|>", "<|END_OF_TURN_TOKEN|>"),
}

# general.architecture -> llama.cpp's built-in template of that family. "llama" is absent on purpose:
# Llama 2, Llama 3, Mistral and many fine-tunes share it, so only the vocabulary's markup can tell.
_BY_ARCHITECTURE: dict[str, str] = {
    "gemma": "gemma",
    "gemma2": "gemma",
    "gemma3": "gemma",
    "gemma3n": "gemma",
    "qwen": "chatml",
    "qwen2": "chatml",
    "qwen2moe": "chatml",
    "qwen3": "chatml",
    "qwen3moe": "chatml",
    "phi3": "phi3",
    "command-r": "command-r",
    "cohere2": "command-r",
    "llama4": "llama4",
    "deepseek2": "deepseek2",
    "chatglm": "chatglm4",
    "exaone": "exaone3",
    "exaone4": "exaone4",
    "granite": "granite",
    "minicpm": "minicpm",
    "orion": "orion",
    "gpt-oss": "gpt-oss",
    "rwkv6": "rwkv-world",
    "rwkv7": "rwkv-world",
}


def builtin_name(architecture: str, has_token: Callable[[str], bool]) -> str | None:
    """The built-in template for a model of `architecture` whose vocabulary has the tokens `has_token` accepts.

    The architecture's own template when its markup is in the vocabulary (or it needs none we
    check); else the first template whose markup is; else None.
    """
    preferred = _BY_ARCHITECTURE.get(architecture)
    candidates = ([preferred] if preferred else []) + [name for name in _MARKUP if name != preferred]
    for name in candidates:
        if all(has_token(token) for token in _MARKUP.get(name, ())):
            return name
    return None


class BuiltinTemplate(PromptTemplate):
    """One of llama.cpp's built-in templates (llama_chat_apply_template), the BOS token put first."""

    def __init__(self, name: str, *, bos_token: str) -> None:
        self.name = name
        self._bos = bos_token  # "" when the vocabulary adds none
        super().__init__()

    def _render(self, messages: list[dict[str, str]]) -> str:
        chat = (llama.llama_chat_message * len(messages))(
            *(llama.llama_chat_message(role=m["role"].encode(), content=m["content"].encode()) for m in messages)
        )
        size = 2 * sum(len(m["content"].encode()) + len(m["role"]) for m in messages) + 1024
        for _ in range(2):
            buf = ctypes.create_string_buffer(size)
            n = llama.llama_chat_apply_template(self.name.encode(), chat, len(messages), True, buf, size)
            if n < 0:
                raise InvalidRequest(f"llama.cpp's built-in {self.name} template could not render these messages.")
            if n <= size:
                return self._bos + buf.raw[:n].decode("utf-8", "replace")
            size = n  # the buffer was short: n is the size needed
        raise InvalidRequest(f"llama.cpp's built-in {self.name} template could not render these messages.")


class NoTemplate(PromptTemplate):
    """A model with no chat template and no built-in that fits: chat is refused, completions work."""

    def __init__(self, architecture: str) -> None:
        self._architecture = architecture
        super().__init__()

    def _render(self, messages: list[dict[str, str]]) -> str:
        raise InvalidRequest(
            f"This model's GGUF has no chat template and none of llama.cpp's built-in templates fits its "
            f"architecture ({self._architecture}); send your own prompt format to /v1/completions, or use a "
            "GGUF with a chat template.",
            param="model",
        )
