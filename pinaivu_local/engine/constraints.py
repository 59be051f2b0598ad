"""Constrained decoding with llguidance: one matcher per sequence, token masks for a whole step at once.

A model's `Grammars` builds the llguidance tokenizer from its vocabulary (once, on first use),
compiles each grammar once (cached by its text) and hands every constrained sequence a `Guide`:
a copy of the compiled matcher that follows the tokens the sequence samples. Before the sampler
chain runs, the masks of every guided sequence of the step are computed in parallel and written
into llama.cpp's logits in place (forbidden tokens become -inf), so no sampler can pick them.
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from collections import OrderedDict
from dataclasses import dataclass

import llama_cpp.llama_cpp as llama
import numpy as np
from llguidance import LLExecutor, LLMatcher, LLTokenizer
from llguidance.llamacpp import lltokenizer_from_vocab

from pinaivu_local.engine.closing import Closers, ValueCloser
from pinaivu_local.engine.prepared import Constraint
from pinaivu_local.engine.sampling import logits_row
from pinaivu_local.errors import InvalidRequest

log = logging.getLogger(__name__)

# Compiled grammars kept per model; a request with an evicted one compiles it again.
CACHE_SIZE = 64
# For each byte of a mask (8 tokens, lowest bit first): what those tokens' logits get, 0 or -inf.
_BYTE_PENALTIES = np.where(
    np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1, bitorder="little") == 1, 0.0, -np.inf
).astype(np.float32)


@dataclass
class MaskStats:
    """Time spent computing and applying token masks, for the bench."""

    masks: int = 0
    seconds: float = 0.0


class Guide:
    """The grammar state of one sequence: waiting (lazy), active, or off."""

    def __init__(
        self,
        matcher: LLMatcher,
        constraint: Constraint,
        tokenizer: LLTokenizer,
        wake_ids: set[int],
        closer: ValueCloser | None = None,
    ) -> None:
        """`closer`: a test model's, which takes the token that ends the current value where one is allowed."""
        self._matcher = matcher
        self._tokenizer = tokenizer
        self._wake_ids = wake_ids
        self.closer = closer
        self._wake_text = constraint.wake_text.encode() if constraint.wake_text else None
        self.active = not constraint.lazy
        # Lazy: the output's opening tokens while they may still grow into the wake text.
        self._opening: list[int] | None = [] if self._wake_text else None

    @property
    def finished(self) -> bool:
        """The grammar is complete and allows nothing more: the sequence ends here (stop)."""
        return self.active and self._matcher.is_stopped() and not self._matcher.is_error()

    def accept(self, token: int) -> None:
        """Follow a sampled token: advance the matcher, or wake a lazy grammar at a call's opening."""
        if self.active:
            if not self._matcher.consume_token(token):
                # Cannot happen when the mask was applied; never guess, fall back to free text.
                log.warning("constraint refused sampled token %d: %s", token, self._matcher.get_error())
                self.active = False
            elif self.closer is not None:
                self.closer.feed(self._tokenizer.decode_bytes([token]))
            return
        if token in self._wake_ids:
            self._wake([])
        elif self._opening is not None and self._wake_text is not None:
            piece = self._tokenizer.decode_bytes([token])
            if piece.strip() or self._opening:  # blank tokens before the opening are not the grammar's
                self._opening.append(token)
            text = self._tokenizer.decode_bytes(self._opening).lstrip()
            if text.startswith(self._wake_text):
                self._wake(self._opening)  # the grammar takes the opening as written, blanks included
            elif not self._wake_text.startswith(text):
                self._opening = None  # free text: only a wake token can start a call now

    def _wake(self, tokens: list[int]) -> None:
        self._opening = None
        if self._matcher.consume_tokens(tokens):
            self.active = True
            if self.closer is not None:
                self.closer.feed(self._tokenizer.decode_bytes(tokens))
        else:
            log.debug("lazy constraint could not take its opening token; the output stays free")
            self._wake_ids = set()

    @property
    def matcher(self) -> LLMatcher:
        """The llguidance matcher (batched mask computation needs it)."""
        return self._matcher


class Grammars:
    """A model's grammar machinery: tokenizer, compiled-grammar cache, mask executor."""

    def __init__(self, vocab: llama.llama_vocab_p, n_vocab: int, n_threads: int = 1, *, closing: bool = False) -> None:
        """`closing`: a test model's, whose guided sequences end each value as soon as it may (engine/closing.py)."""
        self._vocab = vocab
        self.n_vocab = n_vocab
        self._n_threads = max(1, n_threads)
        self._lock = threading.Lock()
        self._tokenizer: LLTokenizer | None = None
        self._executor: LLExecutor | None = None
        self._compiled: OrderedDict[str, LLMatcher] = OrderedDict()
        self._closing = closing
        self._closers: Closers | None = None
        self._bitmask = np.zeros((0, (n_vocab + 31) // 32), dtype=np.int32)
        self.stats = MaskStats()

    def check(self, constraint: Constraint) -> None:
        """Compile the constraint's grammar (cached); InvalidRequest saying what it cannot enforce."""
        self._pristine(constraint)

    def guide(self, constraint: Constraint) -> Guide:
        """A fresh guide for one sequence."""
        matcher = self._pristine(constraint).deep_copy()
        tokenizer = self._tokenizer_now()
        closer = None
        if self._closing:
            if self._closers is None:
                self._closers = Closers.of(tokenizer)
            closer = ValueCloser(self._closers)
        return Guide(matcher, constraint, tokenizer, self._special_ids(constraint.wake_tokens), closer)

    def mask(self, ctx: llama.llama_context_p, guided: list[tuple[Guide, int]]) -> None:
        """Write every active guide's mask into the logits at its batch index (-inf where forbidden)."""
        active = [(g, index) for g, index in guided if g.active]
        if not active:
            return
        started = time.perf_counter()
        if self._bitmask.shape[0] < len(active):
            self._bitmask = np.zeros((len(active), self._bitmask.shape[1]), dtype=np.int32)
        executor = self._executor_now()
        rows = [(g.matcher, row) for row, (g, _) in enumerate(active)]
        executor.unsafe_compute_mask_ptr(rows, self._bitmask.ctypes.data, self._bitmask.shape[1] * 4, len(rows))
        for row, (guide, index) in enumerate(active):
            logits = logits_row(ctx, index, self.n_vocab)
            if guide.closer is not None and (closing := guide.closer.pick(self._bitmask[row])) is not None:
                logits.fill(-np.inf)  # a test model's closer is the only token left to sample
                logits[closing] = 0.0
                continue
            # Each mask byte picks its 8 penalties (0 allowed, -inf forbidden) from a table, then one add:
            # several times faster than unpacking bits and storing through a boolean index.
            penalties = np.take(_BYTE_PENALTIES, self._bitmask[row].view(np.uint8), axis=0).reshape(-1)
            np.add(logits, penalties[: self.n_vocab], out=logits)
        self.stats.masks += len(active)
        self.stats.seconds += time.perf_counter() - started

    def _pristine(self, constraint: Constraint) -> LLMatcher:
        grammar = constraint.grammar
        with self._lock:
            matcher = self._compiled.get(grammar)
            if matcher is not None:
                self._compiled.move_to_end(grammar)
                return matcher
        tokenizer = self._tokenizer_now()
        matcher = LLMatcher(tokenizer, grammar, log_level=0)  # compiles without the GIL
        if matcher.is_error():
            # A schema llguidance cannot enforce (an unimplemented keyword, a look-around pattern, a
            # remote $ref) is refused in llguidance's words, which name it; never silently loosened.
            raise InvalidRequest(
                f"{constraint.param}: the JSON schema uses something pinaivu-local cannot enforce "
                f"({matcher.get_error()}); remove it or express it differently.",
                param=constraint.param,
            )
        with self._lock:
            self._compiled[grammar] = matcher
            while len(self._compiled) > CACHE_SIZE:
                self._compiled.popitem(last=False)
        return matcher

    def _tokenizer_now(self) -> LLTokenizer:
        # Built on first use: it reads every token of the vocabulary (about a second for 128k).
        with self._lock:
            if self._tokenizer is None:
                with warnings.catch_warnings():  # llguidance calls a binding llama-cpp-python marks deprecated
                    warnings.simplefilter("ignore", DeprecationWarning)
                    self._tokenizer = lltokenizer_from_vocab(self._vocab)
            return self._tokenizer

    def _executor_now(self) -> LLExecutor:
        if self._executor is None:
            self._executor = LLExecutor(num_threads=self._n_threads)
        return self._executor

    def _special_ids(self, texts: tuple[str, ...]) -> set[int]:
        """Ids of the special tokens spelled `texts`; a text that is no single token here is skipped."""
        ids = set()
        for text in texts:
            data = text.encode()
            tokens = (llama.llama_token * 8)()
            n = llama.llama_tokenize(self._vocab, data, len(data), tokens, len(tokens), False, True)
            if n == 1:
                ids.add(tokens[0])
        return ids
