"""Writes tiny Llama-3.2-architecture GGUF models: random weights, a real BPE vocabulary.

They load in milliseconds and exercise the whole stack (tokenizer, chat template,
sampling, quantized kernels); the text they write is meaningless by design.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pinaivu_local.tiny_models.llama3_template import LLAMA3_TEMPLATE

if TYPE_CHECKING:
    import gguf

# Llama 3's special tokens, in the order Meta numbers them after the regular vocabulary.
SPECIAL_TOKENS = (
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|python_tag|>",
    "<|finetune_right_pad_id|>",
)

# Text the BPE merges are learned from; any English prose does.
_CORPUS = (
    "the quick brown fox jumps over the lazy dog. hello world, this is a test of the "
    "local inference server. say hello to the model and it answers with tokens. "
    "there is no network here, only the loopback interface and the models we make. "
    "requests, responses, streams and errors: each one is tested over real http. "
)


@dataclass(frozen=True)
class TinyShape:
    """Dimensions of a generated model."""

    n_embd: int = 64
    n_layer: int = 2
    n_head: int = 4
    n_head_kv: int = 2
    n_ff: int = 128
    n_ctx_train: int = 4096
    n_merges: int = 64
    # Pad the vocabulary with extra normal tokens up to this many (special tokens included);
    # None keeps just the bytes, the merges and the special tokens.
    n_vocab: int | None = None
    # Multiplies the (tied) embeddings, so logits are this much further apart: greedy decoding
    # then survives the float noise of different batch shapes.
    logit_gain: float = 4.0


# Llama-3.2-1B's exact shapes (tied embeddings): random weights at the real cost per token.
LLAMA_3_2_1B_SHAPE = TinyShape(
    n_embd=2048, n_layer=16, n_head=32, n_head_kv=8, n_ff=8192, n_ctx_train=131072, n_vocab=128256
)

# Rows of a matrix generated at a time: bounds the float64 scratch of a big model's tensors.
_ROWS_PER_BLOCK = 4096


@dataclass(frozen=True)
class _Tensor:
    """One tensor to write: its name, numpy shape (out, in) and how its values are made."""

    name: str
    shape: tuple[int, ...]
    gain: float | None = 1.0  # None: a norm (ones, kept F32); else normal / sqrt(in) * gain


def _byte_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable characters (byte-level BPE)."""
    printable = list(range(ord("!"), ord("~") + 1))
    printable += list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    mapping = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


def build_vocab(n_merges: int, size: int | None = None) -> tuple[list[str], list[str], list[int]]:
    """Return (tokens, merges, token types) of a byte-level BPE vocabulary.

    With `size`, extra normal tokens (never produced by the merges) pad it to exactly that many.
    """
    to_uni = _byte_to_unicode()
    tokens = [to_uni[b] for b in range(256)]
    words = [[to_uni[b] for b in (" " + w).encode()] for w in _CORPUS.split()]
    merges: list[str] = []
    for _ in range(n_merges):
        pairs: Counter[tuple[str, str]] = Counter()
        for word in words:
            pairs.update(itertools.pairwise(word))
        if not pairs:
            break
        (left, right), _count = pairs.most_common(1)[0]
        merges.append(f"{left} {right}")
        tokens.append(left + right)
        words = [_merge_pair(word, left, right) for word in words]
    if size is not None:
        n_pad = size - len(tokens) - len(SPECIAL_TOKENS)
        if n_pad < 0:
            raise ValueError(f"a vocabulary of {size} tokens cannot hold {len(tokens) + len(SPECIAL_TOKENS)}")
        # Brackets never occur in the corpus, so no merge produces these.
        tokens += [f"[pad{i}]" for i in range(n_pad)]
    types = [1] * len(tokens) + [3] * len(SPECIAL_TOKENS)  # 1 normal, 3 control
    return tokens + list(SPECIAL_TOKENS), merges, types


def _merge_pair(word: list[str], left: str, right: str) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(word):
        if i + 1 < len(word) and word[i] == left and word[i + 1] == right:
            out.append(left + right)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return out


def write_tiny_model(
    path: Path,
    *,
    quant: str = "F16",
    shape: TinyShape | None = None,
    seed: int = 0,
    chat_template: str | None = LLAMA3_TEMPLATE,
) -> Path:
    """Write a tiny Llama 3.2 model to `path` (atomically) and return the path.

    `chat_template=None` leaves `tokenizer.chat_template` out (a GGUF that carries none).

    `quant` is F16, Q8_0 or Q4_0 (the types `gguf.quants` writes). Tensors are generated and
    written one at a time, so a 1B-shaped model needs memory for its largest tensor only.
    """
    import gguf  # heavy import, only needed when a model is generated

    shape = shape or TinyShape()
    qtype = {"F16": None, "Q8_0": gguf.GGMLQuantizationType.Q8_0, "Q4_0": gguf.GGMLQuantizationType.Q4_0}
    if quant not in qtype:
        raise ValueError(f"unsupported quantization {quant!r}; choose F16, Q8_0 or Q4_0")
    tokens, merges, types = build_vocab(shape.n_merges, shape.n_vocab)
    plan = _tensor_plan(shape, len(tokens))
    with gguf_file(path, "llama") as writer:
        _write_metadata(writer, shape, tokens, merges, types, quant)
        if chat_template is not None:
            writer.add_chat_template(chat_template)
        for tensor in plan:
            _add_tensor_info(writer, tensor, qtype[quant])
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        rng = np.random.default_rng(seed)
        for tensor in plan:
            writer.write_tensor_data(_tensor_data(tensor, rng, qtype[quant]))
    return path


@contextlib.contextmanager
def gguf_file(path: Path, arch: str) -> Iterator[gguf.GGUFWriter]:
    """A GGUFWriter of architecture `arch` on a temporary file beside `path`, which becomes `path` only
    once everything is written: a reader never sees half a model, and a failure leaves nothing."""
    import gguf  # heavy import, only needed when a model is generated

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=".tiny-", suffix=".gguf")
    os.close(fd)
    writer = gguf.GGUFWriter(tmp_name, arch)
    try:
        yield writer
    except BaseException:
        writer.close()
        Path(tmp_name).unlink(missing_ok=True)
        raise
    writer.close()
    os.replace(tmp_name, path)


def _write_metadata(
    writer: gguf.GGUFWriter, shape: TinyShape, tokens: list[str], merges: list[str], types: list[int], quant: str
) -> None:
    file_types = {"F16": 1, "Q8_0": 7, "Q4_0": 2}
    head_dim = shape.n_embd // shape.n_head
    writer.add_name(f"pinaivu tiny llama3.2 {quant}")
    writer.add_file_type(file_types[quant])
    writer.add_context_length(shape.n_ctx_train)
    writer.add_embedding_length(shape.n_embd)
    writer.add_block_count(shape.n_layer)
    writer.add_feed_forward_length(shape.n_ff)
    writer.add_head_count(shape.n_head)
    writer.add_head_count_kv(shape.n_head_kv)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(500000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("llama-bpe")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    special = {tok: tokens.index(tok) for tok in SPECIAL_TOKENS}
    writer.add_bos_token_id(special["<|begin_of_text|>"])
    writer.add_eos_token_id(special["<|eot_id|>"])
    writer.add_eot_token_id(special["<|eot_id|>"])
    writer.add_add_bos_token(True)


def _tensor_plan(shape: TinyShape, n_vocab: int) -> list[_Tensor]:
    """Every tensor in file order, in GGUF's row-major (out, in) layout; embeddings are tied."""
    head_dim = shape.n_embd // shape.n_head
    kv_dim = head_dim * shape.n_head_kv
    d, ff = shape.n_embd, shape.n_ff
    plan = [_Tensor("token_embd.weight", (n_vocab, d), shape.logit_gain)]
    for i in range(shape.n_layer):
        plan += [
            _Tensor(f"blk.{i}.attn_norm.weight", (d,), None),
            _Tensor(f"blk.{i}.attn_q.weight", (d, d)),
            _Tensor(f"blk.{i}.attn_k.weight", (kv_dim, d)),
            _Tensor(f"blk.{i}.attn_v.weight", (kv_dim, d)),
            _Tensor(f"blk.{i}.attn_output.weight", (d, d)),
            _Tensor(f"blk.{i}.ffn_norm.weight", (d,), None),
            _Tensor(f"blk.{i}.ffn_gate.weight", (ff, d)),
            _Tensor(f"blk.{i}.ffn_up.weight", (ff, d)),
            _Tensor(f"blk.{i}.ffn_down.weight", (d, ff)),
        ]
    plan.append(_Tensor("output_norm.weight", (d,), None))
    return plan


def _add_tensor_info(writer: gguf.GGUFWriter, tensor: _Tensor, qtype: gguf.GGMLQuantizationType | None) -> None:
    import gguf

    if tensor.gain is None:  # norms stay F32, as llama.cpp's converters write them
        writer.add_tensor_info(tensor.name, tensor.shape, np.dtype(np.float32), 4 * tensor.shape[0])
    elif qtype is None:
        writer.add_tensor_info(tensor.name, tensor.shape, np.dtype(np.float16), 2 * int(np.prod(tensor.shape)))
    else:
        byte_shape = gguf.quants.quant_shape_to_byte_shape(tensor.shape, qtype)
        nbytes = int(np.prod(byte_shape))
        writer.add_tensor_info(tensor.name, byte_shape, np.dtype(np.uint8), nbytes, raw_dtype=qtype)


def _tensor_data(tensor: _Tensor, rng: np.random.Generator, qtype: gguf.GGMLQuantizationType | None) -> np.ndarray:
    """The tensor's values in their file encoding, made a block of rows at a time."""
    import gguf

    if tensor.gain is None:
        return np.ones(tensor.shape, dtype=np.float32)
    rows, cols = tensor.shape
    gain = np.float32(tensor.gain)
    out_shape = tensor.shape if qtype is None else gguf.quants.quant_shape_to_byte_shape(tensor.shape, qtype)
    out = np.empty(out_shape, dtype=np.float16 if qtype is None else np.uint8)
    for start in range(0, rows, _ROWS_PER_BLOCK):
        stop = min(start + _ROWS_PER_BLOCK, rows)
        # Drawing block after block yields the same stream as drawing the whole matrix at once.
        block = (rng.standard_normal((stop - start, cols)) / np.sqrt(cols)).astype(np.float32) * gain
        out[start:stop] = block.astype(np.float16) if qtype is None else gguf.quants.quantize(block, qtype)
    return out
