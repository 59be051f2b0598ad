"""Writes tiny BERT-architecture GGUF models: an embedding model and a reranker with a known answer.

Both use the byte-level BPE vocabulary of the tiny Llama models (writer.py), so the same text makes
the same tokens; llama.cpp reads the tokenizer apart from the architecture. BERT is what llama.cpp
gives a classification head (`cls`, `cls.output`) and rank pooling, and it attends both ways, as
most embedding models do.

The reranker computes a score a test can know in advance: its attention and feed-forward weights are
zero and its position and type embeddings are zero, so each token's last hidden state is its own
embedding, normalized; the classifier averages them over the pair (classifier pooling "mean") and
reads one coordinate that is +1 for a digit token (0-9, never merged: the BPE corpus has no digits)
and -1 for every other token. So a (query, document) pair scores 2 * digits / tokens - 1, counted
over the pair as the engine formats it: BOS, query, EOS, document, EOS.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pinaivu_local.tiny_models.writer import SPECIAL_TOKENS, build_vocab, gguf_file

if TYPE_CHECKING:
    import gguf

# llama.cpp's pooling types, as the GGUF stores them (llama.h's enum llama_pooling_type).
POOLING_MEAN = 1
POOLING_RANK = 4


@dataclass(frozen=True)
class BertShape:
    """Dimensions of a generated BERT model."""

    n_embd: int = 64
    n_layer: int = 2
    n_head: int = 4
    n_ff: int = 128
    n_ctx_train: int = 512
    n_merges: int = 64


def write_tiny_embedding_model(path: Path, *, shape: BertShape | None = None, seed: int = 0) -> Path:
    """A tiny BERT embedding model (random weights, mean pooling) at `path`, written atomically."""
    shape = shape or BertShape()
    rng = np.random.default_rng(seed)
    tokens, merges, types = build_vocab(shape.n_merges)
    tensors = _bert_tensors(shape, len(tokens), rng, identity=False)
    return _write(path, shape, tokens, merges, types, tensors, "pinaivu tiny embedding", rerank=False)


def write_tiny_reranker(path: Path, *, shape: BertShape | None = None, seed: int = 0) -> Path:
    """A tiny BERT reranker whose score is 2 * digit tokens / tokens - 1 of the pair (see the module)."""
    shape = shape or BertShape()
    rng = np.random.default_rng(seed)
    tokens, merges, types = build_vocab(shape.n_merges)
    tensors = _bert_tensors(shape, len(tokens), rng, identity=True)
    d = shape.n_embd
    embd = tensors["token_embd.weight"]
    # Each row: d - 2 coordinates of mean 0 and squared norm d - 2, then (+1, -1) for a digit or
    # (-1, +1) for any other token: mean 0 and variance 1, so layer normalization leaves it as it is.
    for row in range(embd.shape[0]):
        r = rng.standard_normal(d - 2)
        r -= r.mean()
        r *= np.sqrt(d - 2) / np.linalg.norm(r)
        sign = 1.0 if tokens[row] in _DIGITS else -1.0
        embd[row] = np.concatenate([r, [sign, -sign]])
    head = np.zeros((1, d), dtype=np.float32)
    head[0, d - 2] = 1.0
    tensors["cls.output.weight"] = head
    tensors["cls.output.bias"] = np.zeros(1, dtype=np.float32)
    return _write(path, shape, tokens, merges, types, tensors, "pinaivu tiny reranker", rerank=True)


_DIGITS = frozenset("0123456789")


def _bert_tensors(shape: BertShape, n_vocab: int, rng: np.random.Generator, *, identity: bool) -> dict[str, np.ndarray]:
    """Every tensor of a BERT model, F32, in GGUF's (out, in) layout. `identity`: the layers and the
    position and type embeddings are zero, so a token's output is its own normalized embedding."""
    d, ff = shape.n_embd, shape.n_ff

    def matrix(rows: int, cols: int) -> np.ndarray:
        if identity:
            return np.zeros((rows, cols), dtype=np.float32)
        return (rng.standard_normal((rows, cols)) / np.sqrt(cols)).astype(np.float32)

    def norm() -> np.ndarray:
        return np.ones(d, dtype=np.float32)

    def bias(n: int) -> np.ndarray:
        return np.zeros(n, dtype=np.float32)

    tensors: dict[str, np.ndarray] = {
        "token_embd.weight": rng.standard_normal((n_vocab, d)).astype(np.float32),
        "token_types.weight": matrix(2, d) * 0.1,
        "position_embd.weight": matrix(shape.n_ctx_train, d) * 0.1,
        "token_embd_norm.weight": norm(),
        "token_embd_norm.bias": bias(d),
    }
    for i in range(shape.n_layer):
        tensors |= {
            f"blk.{i}.attn_q.weight": matrix(d, d),
            f"blk.{i}.attn_q.bias": bias(d),
            f"blk.{i}.attn_k.weight": matrix(d, d),
            f"blk.{i}.attn_k.bias": bias(d),
            f"blk.{i}.attn_v.weight": matrix(d, d),
            f"blk.{i}.attn_v.bias": bias(d),
            f"blk.{i}.attn_output.weight": matrix(d, d),
            f"blk.{i}.attn_output.bias": bias(d),
            f"blk.{i}.attn_output_norm.weight": norm(),
            f"blk.{i}.attn_output_norm.bias": bias(d),
            f"blk.{i}.ffn_up.weight": matrix(ff, d),
            f"blk.{i}.ffn_up.bias": bias(ff),
            f"blk.{i}.ffn_down.weight": matrix(d, ff),
            f"blk.{i}.ffn_down.bias": bias(d),
            f"blk.{i}.layer_output_norm.weight": norm(),
            f"blk.{i}.layer_output_norm.bias": bias(d),
        }
    return tensors


def _write(
    path: Path,
    shape: BertShape,
    tokens: list[str],
    merges: list[str],
    types: list[int],
    tensors: dict[str, np.ndarray],
    name: str,
    *,
    rerank: bool,
) -> Path:
    with gguf_file(path, "bert") as writer:
        _metadata(writer, shape, tokens, merges, types, name, rerank=rerank)
        for tensor_name, data in tensors.items():
            writer.add_tensor(tensor_name, data)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    return path


def _metadata(
    writer: gguf.GGUFWriter,
    shape: BertShape,
    tokens: list[str],
    merges: list[str],
    types: list[int],
    name: str,
    *,
    rerank: bool,
) -> None:
    import gguf

    writer.add_name(name)
    writer.add_file_type(0)  # all F32
    writer.add_context_length(shape.n_ctx_train)
    writer.add_embedding_length(shape.n_embd)
    writer.add_block_count(shape.n_layer)
    writer.add_feed_forward_length(shape.n_ff)
    writer.add_head_count(shape.n_head)
    writer.add_layer_norm_eps(1e-12)
    writer.add_causal_attention(False)
    writer.add_pooling_type(gguf.PoolingType.RANK if rerank else gguf.PoolingType.MEAN)
    if rerank:
        writer.add_classifier_output_labels(["relevance"])
        writer.add_uint32("bert.classifier.pooling_type", POOLING_MEAN)
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("llama-bpe")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_token_type_count(2)
    special = {tok: tokens.index(tok) for tok in SPECIAL_TOKENS}
    writer.add_bos_token_id(special["<|begin_of_text|>"])
    writer.add_eos_token_id(special["<|end_of_text|>"])
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
