"""Settings pointed at the fake hub and a fake Ollama store."""

from __future__ import annotations

from pathlib import Path

import pytest

from pinaivu_local.settings import Settings
from tests.weights.hub import Hub


@pytest.fixture
def settings(tmp_path: Path, hub: Hub, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings with the data dir in tmp_path and the Hub at the fake one; nothing from the real environment."""
    for name in ("HF_TOKEN", "HF_HUB_OFFLINE", "HF_ENDPOINT", "OLLAMA_MODELS"):
        monkeypatch.delenv(name, raising=False)
    return Settings(data_dir=tmp_path / "data", hf_endpoint=hub.url, ollama_models=tmp_path / "ollama")
