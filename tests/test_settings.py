"""Settings: PINAIVU_ environment, .env, defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from pinaivu_local.settings import Settings, default_models_file


def test_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    settings = Settings()
    assert (settings.host, settings.port) == ("127.0.0.1", 8080)
    assert settings.data_dir == tmp_path / "xdg" / "pinaivu-local"
    assert settings.models_file == Path(__file__).parent.parent / "pinaivu_local" / "models.toml"
    assert settings.api_key is None


def test_environment_and_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("PINAIVU_PORT=9001\nPINAIVU_API_KEY=sk-pnv-fromdotenv\n")
    monkeypatch.setenv("PINAIVU_HOST", "0.0.0.0")
    settings = Settings()
    assert (settings.host, settings.port) == ("0.0.0.0", 9001)
    assert settings.api_key is not None and settings.api_key.get_secret_value() == "sk-pnv-fromdotenv"
    assert "fromdotenv" not in repr(settings)


def test_local_models_toml_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models.toml").write_text("")
    assert default_models_file() == tmp_path / "models.toml"
