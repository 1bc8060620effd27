"""The per-user directory of the default SQLite database and development key: one rule, configured values win."""

from __future__ import annotations

from pathlib import Path

import pytest

from fhir_server.config import load_settings, user_home


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for name in ("FHIR_SERVER_HOME", "XDG_DATA_HOME", "FHIR_SERVER_DATABASE_URL", "FHIR_SERVER_DEV_KEY_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "me"))
    return monkeypatch


def test_home_then_xdg_then_local_share(clean_env: pytest.MonkeyPatch, tmp_path: Path):
    assert user_home() == tmp_path / "me" / ".local" / "share" / "fhir-referral-hub"
    clean_env.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert user_home() == tmp_path / "xdg" / "fhir-referral-hub"
    clean_env.setenv("FHIR_SERVER_HOME", str(tmp_path / "hub"))
    assert user_home() == tmp_path / "hub"


def test_the_defaults_are_in_the_per_user_directory_and_configured_values_win(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
):
    clean_env.setenv("FHIR_SERVER_HOME", str(tmp_path / "hub"))
    settings = load_settings()
    assert settings.database_url == f"sqlite:///{tmp_path / 'hub' / 'fhir.sqlite3'}"
    assert settings.dev_key_path == str(tmp_path / "hub" / "dev-issuer-key.json")
    clean_env.setenv("FHIR_SERVER_DEV_KEY_PATH", str(tmp_path / "key.json"))
    settings = load_settings(database_url="sqlite:///elsewhere.sqlite3")
    assert settings.database_url == "sqlite:///elsewhere.sqlite3"
    assert settings.dev_key_path == str(tmp_path / "key.json")
