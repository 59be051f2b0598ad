"""The tiny model generator: a valid byte-level BPE vocabulary and loadable files."""

from __future__ import annotations

from pathlib import Path

import gguf
import pytest

from pinaivu_local.tiny_models.writer import SPECIAL_TOKENS, TinyShape, build_vocab, write_tiny_model


def test_vocab_is_consistent() -> None:
    tokens, merges, types = build_vocab(32)
    assert len(tokens) == 256 + len(merges) + len(SPECIAL_TOKENS) == len(types)
    assert len(set(tokens)) == len(tokens)
    vocab = set(tokens)
    for merge in merges:
        left, right = merge.split(" ")
        assert left in vocab and right in vocab and left + right in vocab
    assert tokens[-len(SPECIAL_TOKENS) :] == list(SPECIAL_TOKENS)
    assert types[-1] == 3 and types[0] == 1


@pytest.mark.parametrize("quant", ["F16", "Q8_0", "Q4_0"])
def test_written_file_metadata(tmp_path: Path, quant: str) -> None:
    path = write_tiny_model(tmp_path / f"m-{quant}.gguf", quant=quant)
    reader = gguf.GGUFReader(path)
    fields = reader.fields
    assert bytes(fields["general.architecture"].parts[-1]).decode() == "llama"
    assert "tokenizer.chat_template" in fields
    kinds = {t.tensor_type.name for t in reader.tensors}
    assert quant in kinds
    assert not list(tmp_path.glob(".tiny-*"))  # written atomically


def test_unknown_quantization(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unsupported quantization"):
        write_tiny_model(tmp_path / "x.gguf", quant="Q2_K")


def test_vocab_padded_to_a_target_size() -> None:
    plain, merges, _ = build_vocab(16)
    tokens, padded_merges, types = build_vocab(16, size=1000)
    assert len(tokens) == len(types) == 1000
    assert padded_merges == merges
    assert len(set(tokens)) == 1000
    assert tokens[-len(SPECIAL_TOKENS) :] == list(SPECIAL_TOKENS)  # specials stay last, as in Llama 3
    assert tokens[: len(plain) - len(SPECIAL_TOKENS)] == plain[: -len(SPECIAL_TOKENS)]
    assert types.count(3) == len(SPECIAL_TOKENS)
    with pytest.raises(ValueError, match="cannot hold"):
        build_vocab(16, size=100)


def test_padded_model_loads_with_its_vocabulary_size(tmp_path: Path) -> None:
    import llama_cpp.llama_cpp as llama

    from pinaivu_local.engine.llama_model import LlamaModel, LoadOptions

    path = write_tiny_model(tmp_path / "padded.gguf", shape=TinyShape(n_vocab=2048))
    model = LlamaModel(path, LoadOptions(n_gpu_layers=0))
    try:
        assert model.n_vocab == 2048
        assert model.token_text(llama.llama_vocab_eos(model.vocab)) == "<|eot_id|>"
        assert model.tokenize("the quick fox", add_bos=False)  # the BPE merges still apply
    finally:
        model.close()


def test_tensors_are_generated_block_by_block_identically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A big model is generated a block of rows at a time; the values must not depend on the block size.
    import pinaivu_local.tiny_models.writer as tiny

    whole = write_tiny_model(tmp_path / "whole.gguf", quant="Q8_0").read_bytes()
    monkeypatch.setattr(tiny, "_ROWS_PER_BLOCK", 7)
    assert write_tiny_model(tmp_path / "blocks.gguf", quant="Q8_0").read_bytes() == whole
