"""Catalog source strings: Hub URLs, plain URLs, Ollama references."""

from __future__ import annotations

import pytest

from pinaivu_local.errors import ConfigError
from pinaivu_local.weights.sources import HFSource, OllamaSource, URLSource, parse_ollama_ref, parse_source


def test_hf_source_url_honours_the_endpoint() -> None:
    source = parse_source("hf://bartowski/Llama-3.2-1B-Instruct-GGUF/sub dir/Llama-3.2-1B-Instruct-Q4_K_M.gguf")
    assert isinstance(source, HFSource)
    assert source.url("https://huggingface.co") == (
        "https://huggingface.co/bartowski/Llama-3.2-1B-Instruct-GGUF/resolve/main/"
        "sub%20dir/Llama-3.2-1B-Instruct-Q4_K_M.gguf"
    )
    assert source.url("http://127.0.0.1:9/mirror/") == (
        "http://127.0.0.1:9/mirror/bartowski/Llama-3.2-1B-Instruct-GGUF/resolve/main/"
        "sub%20dir/Llama-3.2-1B-Instruct-Q4_K_M.gguf"
    )
    assert source.file_name() == "Llama-3.2-1B-Instruct-Q4_K_M.gguf"


def test_url_source() -> None:
    source = parse_source("https://example.org/models/a.gguf?download=1")
    assert source == URLSource("https://example.org/models/a.gguf?download=1")
    assert source.file_name() == "a.gguf"


@pytest.mark.parametrize(
    ("ref", "expected", "canonical"),
    [
        ("llama3.2:1b", OllamaSource("registry.ollama.ai", "library", "llama3.2", "1b"), "llama3.2:1b"),
        ("llama3.2", OllamaSource("registry.ollama.ai", "library", "llama3.2", "latest"), "llama3.2:latest"),
        ("me/model:q4", OllamaSource("registry.ollama.ai", "me", "model", "q4"), "me/model:q4"),
        ("host:5000/me/model", OllamaSource("host:5000", "me", "model", "latest"), "host:5000/me/model:latest"),
    ],
)
def test_ollama_references(ref: str, expected: OllamaSource, canonical: str) -> None:
    assert parse_ollama_ref(ref) == expected
    assert expected.ref() == canonical
    assert parse_source(f"ollama://{ref}") == expected


@pytest.mark.parametrize(
    "text", ["s3://b/a.gguf", "hf://owner/repo", "hf://owner/repo/dir/", "https://x.org/", "ollama://"]
)
def test_unfetchable_sources(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_source(text)
