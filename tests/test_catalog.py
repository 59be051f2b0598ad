"""models.toml parsing: resolution of paths, defaults, and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from pinaivu_local.catalog import load_catalog
from pinaivu_local.errors import ConfigError

SHIPPED = Path(__file__).parent.parent / "models.toml"


def test_shipped_catalog(tmp_path: Path) -> None:
    catalog = load_catalog(SHIPPED, tmp_path)
    assert catalog.ids() == ["llama3.2:1b", "llama3.2:3b", "nomic-embed-text:v1.5"]
    one = catalog.models[0]
    assert one.file == tmp_path / "Llama-3.2-1B-Instruct-Q4_K_M.gguf"
    assert (one.n_ctx, one.n_gpu_layers, one.parallel) == (8192, -1, 4)
    assert one.fetch_command() == "pinaivu-local models pull llama3.2:1b"
    assert (one.kind, one.capabilities()) == ("chat", ["chat", "completions", "embeddings"])
    embed = catalog.models[2]
    assert (embed.kind, embed.pooling, embed.matryoshka, embed.capabilities()) == (
        "embedding",
        None,
        True,
        ["embeddings"],
    )
    assert embed.file == tmp_path / "nomic-embed-text-v1.5.Q8_0.gguf"


def test_kind_and_pooling_are_checked(tmp_path: Path) -> None:
    file = tmp_path / "models.toml"
    file.write_text('[models."r"]\npath = "r.gguf"\nkind = "reranker"\n')
    with pytest.raises(ConfigError, match="kind"):
        load_catalog(file, tmp_path)
    file.write_text('[models."r"]\npath = "r.gguf"\nkind = "rerank"\npooling = "rank"\n')
    assert load_catalog(file, tmp_path).models[0].kind == "rerank"


def test_path_is_relative_to_the_catalog_and_wins(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    file = tmp_path / "sub" / "models.toml"
    file.write_text('[models."m"]\nsource = "hf://a/b/c.gguf"\npath = "../w/model.gguf"\n')
    spec = load_catalog(file, tmp_path / "data").models[0]
    assert spec.file == tmp_path / "w" / "model.gguf"
    assert spec.n_ctx == 8192


def test_https_source_and_local_only_source(tmp_path: Path) -> None:
    file = tmp_path / "models.toml"
    file.write_text('[models."a"]\nsource = "https://example.org/x/a.gguf"\n[models."b"]\npath = "b.gguf"\n')
    a, b = load_catalog(file, tmp_path).models
    assert a.fetch_command() == "pinaivu-local models pull a"
    assert a.file == tmp_path / "a.gguf"
    assert b.fetch_command() is None


def test_ollama_source_gets_a_safe_file_name(tmp_path: Path) -> None:
    file = tmp_path / "models.toml"
    file.write_text('[models."x y"]\nsource = "ollama://llama3.2:1b"\n')
    spec = load_catalog(file, tmp_path).models[0]
    assert spec.file == tmp_path / "ollama-llama3.2-1b.gguf"
    assert spec.fetch_command() == "pinaivu-local models pull 'x y'"


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("[models", "not valid TOML"),
        ('[models."a"]\npath = "a.gguf"\nparallel = 0\n', "parallel"),
        ('[models."a"]\npath = "a.gguf"\nsha256 = "xyz"\n', "sha256"),
        ('models = "x"\n', "no models"),
        ("[models]\na = 1\n", "must be a table"),
        ('[models."a"]\nsource = "s3://bucket/a.gguf"\n', "expected hf://"),
        ('[models."a"]\nsource = "hf://owner/only-repo"\n', "hf://owner/repo/path"),
        ('[models."a"]\nsource = "ollama://a/b/c/d:e"\n', "expected name:tag"),
    ],
)
def test_errors_name_file_and_problem(tmp_path: Path, content: str, needle: str) -> None:
    file = tmp_path / "models.toml"
    file.write_text(content)
    with pytest.raises(ConfigError) as caught:
        load_catalog(file, tmp_path)
    assert str(file) in caught.value.message and needle in caught.value.message
    assert "\n" not in caught.value.message


def test_missing_catalog(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="model catalog not found"):
        load_catalog(tmp_path / "nope.toml", tmp_path)


def test_shipped_catalog_copies_are_identical() -> None:
    assert SHIPPED.read_text() == (SHIPPED.parent / "pinaivu_local" / "models.toml").read_text()
