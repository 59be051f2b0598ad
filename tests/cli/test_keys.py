"""`keys create`, `list`, `revoke` and `rotate` on a data dir with no server running; one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from pinaivu_local.cli import main
from pinaivu_local.keys.store import KeyStore
from pinaivu_local.storage.database import Database
from tests.helpers import free_port


def keys(data_dir: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["keys", *args, "--data-dir", str(data_dir)])


def test_create_list_rotate_revoke(tmp_path: Path) -> None:
    made = keys(tmp_path, "create", "--name", "ci", "--models", "llama3.2:1b", "--tpm", "500", "--json")
    assert made.exit_code == 0, made.output
    issued = json.loads(made.output)
    assert issued["key"].startswith("sk-pnv-") and issued["models"] == ["llama3.2:1b"] and issued["tpm"] == 500
    listed = keys(tmp_path, "list", "--json")
    assert [row["id"] for row in json.loads(listed.output)] == [issued["id"]] and issued["key"] not in listed.output
    rotated = json.loads(keys(tmp_path, "rotate", issued["id"], "--json").output)
    assert rotated["replaces"] == issued["id"] and rotated["tpm"] == 500
    revoked = keys(tmp_path, "revoke", rotated["id"])
    assert revoked.output == f"revoked {rotated['id']} (ci)\n"
    states = {row["id"]: row["state"] for row in json.loads(keys(tmp_path, "list", "--json").output)}
    assert states == {issued["id"]: "revoked", rotated["id"]: "revoked"}


def test_errors_are_one_line(tmp_path: Path) -> None:
    unknown = keys(tmp_path, "revoke", "key_nope")
    assert unknown.exit_code == 1
    assert unknown.output == "Error: No key with id 'key_nope'; list them with `pinaivu-local keys list`.\n"
    bad_rpm = keys(tmp_path, "create", "--name", "x", "--rpm", "0")
    assert bad_rpm.exit_code == 2 and "--rpm: must be at least 1" in bad_rpm.output
    bad_lifetime = keys(tmp_path, "create", "--name", "x", "--expires-in", "soon")
    assert bad_lifetime.exit_code == 2 and "--expires-in" in bad_lifetime.output


def test_a_revoked_key_cannot_be_rotated(tmp_path: Path) -> None:
    issued = json.loads(keys(tmp_path, "create", "--name", "old", "--json").output)
    assert keys(tmp_path, "revoke", issued["id"]).exit_code == 0
    again = keys(tmp_path, "rotate", issued["id"])
    assert again.exit_code == 1
    assert again.output.startswith(f"Error: The key {issued['id']} is revoked and cannot be rotated.")
    assert [row["id"] for row in json.loads(keys(tmp_path, "list", "--json").output)] == [issued["id"]]


def test_limits_have_an_upper_bound(tmp_path: Path) -> None:
    huge = keys(tmp_path, "create", "--name", "x", "--rpm", str(10**20))
    assert huge.exit_code == 2 and "--rpm: must be at most 1000000" in huge.output


def test_keys_on_postgres(tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """With PINAIVU_DATABASE_URL the commands work on the server's keys, not on the data dir's file."""
    monkeypatch.setenv("PINAIVU_DATABASE_URL", postgres_url)
    made = keys(tmp_path, "create", "--name", "shared", "--json")
    assert made.exit_code == 0, made.output
    database = Database(postgres_url)
    try:
        assert [record.name for record in KeyStore(database).list()] == ["shared"]
    finally:
        database.close()
    assert not (tmp_path / "pinaivu.db").exists()


def test_an_unreachable_database_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PINAIVU_DATABASE_URL", f"postgresql://u:secret@127.0.0.1:{free_port()}/db")
    failed = keys(tmp_path, "list")
    assert failed.exit_code == 1 and "cannot connect to the database" in failed.output
    assert "secret" not in failed.output and len(failed.output.splitlines()) == 1
