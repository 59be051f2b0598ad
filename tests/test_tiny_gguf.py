"""The tiny model generator: a valid byte-level BPE vocabulary and loadable files."""

from __future__ import annotations

from pathlib import Path

import gguf
import pytest

from pinaivu_local.tiny_gguf import SPECIAL_TOKENS, build_vocab, write_tiny_model


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
