"""Log probabilities of generated tokens, and which of them a piece of returned text carries.

The distribution is the one the sampler starts from: the model's logits plus the request's
logit_bias (and whatever masks were applied to the logits in place before sampling), before
penalties, temperature and top_p, as OpenAI documents. Computed only for requests that ask.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

# OpenAI's value for "very unlikely": a token whose probability is 0 (masked, or -inf after a bias).
VERY_UNLIKELY = -9999.0

# A token as a client sees it: its text and the raw bytes it writes (None for a control token).
TokenShape = tuple[str, bytes | None]


@dataclass(frozen=True)
class TopLogprob:
    """One candidate at a position: its text, bytes (None: a control token, which writes none) and logprob."""

    token: str
    bytes: bytes | None
    logprob: float


@dataclass(frozen=True)
class TokenLogprob:
    """A generated token's logprob, the most likely candidates at its position, and where its text starts."""

    token: str
    bytes: bytes | None
    logprob: float
    top: tuple[TopLogprob, ...]
    text_offset: int = 0  # characters of completion text before this token's


def token_logprob(
    logits: np.ndarray, bias: Mapping[int, float], token: int, n_top: int, shape: Callable[[int], TokenShape]
) -> TokenLogprob:
    """`token`'s entry: its log softmax(logits + bias) and the `n_top` most likely tokens', most likely first.

    Only the normalizer is computed over the whole vocabulary (one exp pass, float32, summed in
    float64); the logits the sampler reads are not changed.
    """
    row = _biased(logits, bias)
    normalizer = _log_sum_exp(row)
    n_top = min(n_top, len(row))
    top: tuple[TopLogprob, ...] = ()
    if n_top > 0:
        candidates = np.argpartition(row, len(row) - n_top)[len(row) - n_top :]
        # Most likely first; equal logprobs in token-id order, so the answer does not depend on numpy.
        ranked = sorted(candidates.tolist(), key=lambda t: (-row[t], t))
        top = tuple(TopLogprob(*shape(t), _logprob(row[t], normalizer)) for t in ranked)
    return TokenLogprob(*shape(token), _logprob(row[token], normalizer), top)


def _biased(logits: np.ndarray, bias: Mapping[int, float]) -> np.ndarray:
    if not bias:
        return logits
    row = logits.copy()
    row[np.fromiter(bias.keys(), dtype=np.int64)] += np.fromiter(bias.values(), dtype=np.float32)
    return row


def _log_sum_exp(row: np.ndarray) -> float:
    peak = float(row.max())
    if not np.isfinite(peak):  # every token masked: nothing is likely
        return 0.0
    return peak + float(np.log(np.exp(row - peak).sum(dtype=np.float64)))


def _logprob(logit: float, normalizer: float) -> float:
    value = float(logit) - normalizer
    return value if np.isfinite(value) else VERY_UNLIKELY


def token_shape(piece: bytes, control_text: str | None) -> TokenShape:
    """How a token is shown: a control token by its name with no bytes; others by their bytes.

    Bytes that are not UTF-8 on their own (part of a character) are shown as OpenAI does:
    `bytes:` and their escapes, e.g. `bytes:\\xe2\\x80`.
    """
    if control_text is not None:
        return control_text, None
    try:
        return piece.decode("utf-8"), piece
    except UnicodeDecodeError:
        return "bytes:" + "".join(f"\\x{b:02x}" for b in piece), piece


class TokenTrail:
    """Generated tokens' entries, held until the text they wrote has been returned.

    Text reaches the client late: an unfinished UTF-8 character and what could begin a stop
    string are held back. An entry goes out with the delta that carries the last of its text.
    At the end, a token whose text was cut by a stop string goes out if some of its text was
    returned; tokens whose text lies wholly in the stop string (or after it) are never reported.
    """

    def __init__(self, n_top: int) -> None:
        self.n_top = n_top
        self._held: deque[tuple[TokenLogprob, int, int]] = deque()  # entry, start, end (characters)
        self._written = 0  # characters the tokens have written so far (complete ones)
        self._returned = 0  # characters of text handed out in deltas so far

    def add(self, entry: TokenLogprob, chars: int, unfinished: bool) -> None:
        """A token wrote `chars` complete characters; `unfinished`: it also began one not complete yet."""
        start = self._written
        self._written += chars
        self._held.append((entry, start, self._written + (1 if unfinished else 0)))

    def release(self, returned: str, *, final: bool) -> tuple[TokenLogprob, ...]:
        """Entries of tokens whose text `returned` (the next delta's text) completes; at the end, all that count."""
        self._returned += len(returned)
        out: list[TokenLogprob] = []
        while self._held:
            entry, start, end = self._held[0]
            if end > self._returned and not (final and start < self._returned):
                break
            self._held.popleft()
            out.append(TokenLogprob(entry.token, entry.bytes, entry.logprob, entry.top, start))
        if final:
            self._held.clear()
        return tuple(out)
