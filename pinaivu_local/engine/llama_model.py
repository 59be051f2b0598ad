"""One GGUF model loaded through llama.cpp's low-level API: weights, vocabulary, template."""

from __future__ import annotations

import ctypes
import logging
from dataclasses import dataclass
from pathlib import Path

import llama_cpp.llama_cpp as llama

from pinaivu_local.engine.builtin_template import BuiltinTemplate, NoTemplate, builtin_name
from pinaivu_local.engine.chat_template import ChatTemplate, PromptPart, PromptTemplate
from pinaivu_local.engine.logprobs import TokenShape, token_shape
from pinaivu_local.errors import ModelFileError
from pinaivu_local.weights.gguf_info import check_gguf, kv_cache_bytes

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadOptions:
    """How to place a model's weights."""

    n_gpu_layers: int = -1
    weight_repack: bool = False


class LlamaModel:
    """Owns a `llama_model`; frees it in close()."""

    def __init__(self, path: Path, options: LoadOptions) -> None:
        check_gguf(path)
        params = llama.llama_model_default_params()
        params.n_gpu_layers = options.n_gpu_layers
        # Off by default where repacked (AMX) buffers crash llama_decode; see engine/host/repack.py.
        params.use_extra_bufts = options.weight_repack
        model = llama.llama_model_load_from_file(str(path).encode(), params)
        if not model:
            raise ModelFileError(
                f"{path}: llama.cpp could not load this GGUF (truncated, or an unsupported architecture)"
            )
        self.path = path
        self.ptr = model
        self.vocab = llama.llama_model_get_vocab(model)
        self.n_vocab = llama.llama_vocab_n_tokens(self.vocab)
        self.n_ctx_train = llama.llama_model_n_ctx_train(model)
        self.size_bytes = llama.llama_model_size(model)
        self.n_layer = llama.llama_model_n_layer(model)
        # Every token's bytes and the end-of-generation set, read once: the engine looks them up for every
        # sequence at every step, and each call into llama.cpp gives up the GIL, which a busy event loop
        # then holds for up to a switch interval before the engine thread gets it back.
        self._pieces = self._read_pieces()
        self._eog = frozenset(t for t in range(self.n_vocab) if llama.llama_vocab_is_eog(self.vocab, t))
        self.chat_template = self._chat_template()
        self.max_token_bytes = max(map(len, self._pieces), default=1) or 1

    def close(self) -> None:
        """Free the weights."""
        if self.ptr:
            llama.llama_model_free(self.ptr)
            self.ptr = None

    def describe(self) -> str:
        """llama.cpp's one-line description (architecture, size, quantization)."""
        buf = ctypes.create_string_buffer(256)
        llama.llama_model_desc(self.ptr, buf, len(buf))
        return buf.value.decode("utf-8", "replace")

    def kv_cache_bytes(self, n_ctx: int) -> int:
        """Bytes an F16 KV cache of `n_ctx` tokens takes for this model."""
        n_head = max(1, llama.llama_model_n_head(self.ptr))
        head_dim = llama.llama_model_n_embd(self.ptr) // n_head
        n_head_kv = llama.llama_model_n_head_kv(self.ptr) or n_head
        return kv_cache_bytes(n_ctx, self.n_layer, n_head_kv, head_dim, head_dim)

    def tokenize(self, text: str, *, add_bos: bool, special: bool = False) -> list[int]:
        """Tokens of `text`. Only with `special` do strings such as <|eot_id|> become control tokens:
        text that came from a client never gets it, so it cannot forge the template's markup."""
        data = text.encode("utf-8")
        capacity = len(data) + 8
        tokens = (llama.llama_token * capacity)()
        n = llama.llama_tokenize(self.vocab, data, len(data), tokens, capacity, add_bos, special)
        if n < 0:  # the capacity was short: -n is the size needed
            capacity = -n
            tokens = (llama.llama_token * capacity)()
            n = llama.llama_tokenize(self.vocab, data, len(data), tokens, capacity, add_bos, special)
        return list(tokens[:n])

    def tokenize_prompt(self, parts: list[PromptPart]) -> list[int]:
        """Tokens of a rendered chat prompt: the template's markup parsed, message text kept plain."""
        tokens: list[int] = []
        for part in parts:
            if part.text:
                tokens += self.tokenize(part.text, add_bos=False, special=part.markup)
        return tokens

    def _read_pieces(self) -> tuple[bytes, ...]:
        """The bytes of every token of the vocabulary, in order; control tokens render as nothing."""
        buf = ctypes.create_string_buffer(256)
        pieces = []
        for token in range(self.n_vocab):
            n = llama.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, False)
            if n < 0:  # longer than the buffer: -n is the length
                longer = ctypes.create_string_buffer(-n)
                n = llama.llama_token_to_piece(self.vocab, token, longer, len(longer), 0, False)
                pieces.append(longer.raw[:n])
            else:
                pieces.append(buf.raw[:n])
        return tuple(pieces)

    def piece(self, token: int) -> bytes:
        """The bytes of one token; control tokens render as nothing."""
        return self._pieces[token]

    def is_eog(self, token: int) -> bool:
        """Whether `token` ends a generation (<|eot_id|>, <|end_of_text|>, ...)."""
        return token in self._eog

    def shape(self, token: int) -> TokenShape:
        """How a token is shown in logprobs: its text and bytes, or a control token's name and no bytes."""
        control = self.token_text(token) if llama.llama_vocab_is_control(self.vocab, token) else None
        return token_shape(self.piece(token), control)

    def token_text(self, token: int) -> str:
        """The vocabulary's text for a token (special tokens included)."""
        raw = llama.llama_vocab_get_text(self.vocab, token)
        return raw.decode("utf-8", "replace") if raw else ""

    def metadata(self, key: str) -> str:
        """A GGUF metadata value as text ("" when absent)."""
        buf = ctypes.create_string_buffer(256)
        n = llama.llama_model_meta_val_str(self.ptr, key.encode(), buf, len(buf))
        return buf.value.decode("utf-8", "replace") if n >= 0 else ""

    def has_token(self, text: str) -> bool:
        """Whether `text` is one token of the vocabulary (a control token's string, say)."""
        return len(self.tokenize(text, add_bos=False, special=True)) == 1

    def _chat_template(self) -> PromptTemplate:
        """The GGUF's own template; without one, llama.cpp's built-in for its family, if one fits."""
        raw = llama.llama_model_chat_template(self.ptr, None)
        bos = self.token_text(llama.llama_vocab_bos(self.vocab))
        if raw:
            eos = self.token_text(llama.llama_vocab_eos(self.vocab))
            return ChatTemplate(raw.decode("utf-8", "replace"), bos_token=bos, eos_token=eos, origin=str(self.path))
        architecture = self.metadata("general.architecture")
        name = builtin_name(architecture, self.has_token)
        if name is None:
            log.warning(
                "%s has no chat template and no llama.cpp built-in fits its architecture (%s): chat requests "
                "to it are refused; /v1/completions works",
                self.path,
                architecture,
            )
            return NoTemplate(architecture)
        log.info(
            "%s has no chat template: using llama.cpp's built-in %r (architecture %s)", self.path, name, architecture
        )
        return BuiltinTemplate(name, bos_token=bos if llama.llama_vocab_get_add_bos(self.vocab) else "")
