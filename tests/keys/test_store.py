"""The key store on real SQLite and Postgres: hashing, states, rotation, file mode, migrations."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from pinaivu_local.clock import utcnow
from pinaivu_local.errors import AuthenticationError, ConfigError, KeyNotFound
from pinaivu_local.keys.bootstrap import ensure_admin_key
from pinaivu_local.keys.material import hash_key
from pinaivu_local.keys.store import KeySettings, KeyStore
from pinaivu_local.keys.usage import write_last_used
from pinaivu_local.storage.database import Database


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """The same store on the default SQLite file and on a real Postgres server."""
    target = (
        request.getfixturevalue("postgres_url") if request.param == "postgres" else tmp_path / "data" / "pinaivu.db"
    )
    opened = Database(target)
    yield opened
    opened.close()


@pytest.fixture
def store(database: Database) -> KeyStore:
    return KeyStore(database)


def test_created_key_shape_and_storage(store: KeyStore) -> None:
    issued = store.create(KeySettings(name="ci", models=("llama3.2:1b",), rpm=5, tpm=500))
    assert issued.key.startswith("sk-pnv-") and len(issued.key) >= 7 + 32
    record = store.get(issued.record.id)
    assert record.key_hash == hash_key(issued.key) and issued.key not in record.prefix
    assert record.prefix.startswith("sk-pnv-") and record.prefix.endswith("…")
    public = record.public()
    assert "key_hash" not in public and "key" not in public
    assert public["models"] == ["llama3.2:1b"] and (public["rpm"], public["tpm"]) == (5, 500)
    assert public["state"] == "active"


def test_no_clear_key_in_the_database_files(store: KeyStore, database: Database) -> None:
    issued = store.create(KeySettings(name="secret"))
    store.authenticate(issued.key)
    if database.path is None:  # the Postgres server's files are its own: every stored value instead
        with database.engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT * FROM api_keys").fetchall()
        blobs = repr(rows).encode()
        assert len(rows) == 1 and issued.record.id.encode() in blobs
    else:
        blobs = b"".join(p.read_bytes() for p in database.path.parent.iterdir())
    assert issued.key.encode() not in blobs
    assert issued.key[7:].encode() not in blobs


def test_authenticate_states(store: KeyStore) -> None:
    good = store.create(KeySettings(name="good"))
    assert store.authenticate(good.key).id == good.record.id
    assert store.get(good.record.id).last_used_at is not None
    with pytest.raises(AuthenticationError) as unknown:
        store.authenticate("sk-pnv-" + "x" * 43)
    assert unknown.value.code == "invalid_api_key"
    store.revoke(good.record.id)
    with pytest.raises(AuthenticationError) as revoked:
        store.authenticate(good.key)
    assert revoked.value.code == "revoked_api_key" and "revoked" in revoked.value.message
    old = store.create(KeySettings(name="old", expires_in=timedelta(seconds=1)))
    store.update(old.record.id, expires_at=old.record.created_at - timedelta(seconds=1))
    with pytest.raises(AuthenticationError) as expired:
        store.authenticate(old.key)
    assert expired.value.code == "expired_api_key" and "expired" in expired.value.message


def test_a_change_from_another_process_is_seen_at_once(store: KeyStore, database: Database) -> None:
    """The server keeps validated records per row, but reads the row on every request: a key edited or
    revoked by the CLI (another store on another connection) is refused on the very next request."""
    issued = store.create(KeySettings(name="svc", rpm=5))
    first = store.authenticate(issued.key)
    assert store.authenticate(issued.key) is first  # the same row: validated once
    # SQLite: a second engine on the file, as the CLI opens; Postgres: every connection is another session
    other = Database(database.path) if database.path else None
    cli = KeyStore(other or database)
    try:
        cli.update(issued.record.id, rpm=9)
        assert store.authenticate(issued.key).rpm == 9
        cli.revoke(issued.record.id)
        with pytest.raises(AuthenticationError) as revoked:
            store.authenticate(issued.key)
        assert revoked.value.code == "revoked_api_key"
    finally:
        if other is not None:
            other.close()


def test_a_new_last_use_time_is_no_change_of_the_key(store: KeyStore, database: Database) -> None:
    """The request log rewrites last-use times with every batch; that row change costs no new validation."""
    issued = store.create(KeySettings(name="busy"))
    first = store.authenticate(issued.key)
    with database.connection() as conn:
        write_last_used(conn, {issued.record.id: utcnow()})
        conn.commit()
    assert store.get(issued.record.id).last_used_at is not None
    assert store.authenticate(issued.key) is first
    with database.connection() as conn:  # the row deleted behind the server's back
        conn.execute(text("DELETE FROM api_keys"))
        conn.commit()
    with pytest.raises(AuthenticationError) as gone:
        store.authenticate(issued.key)
    assert gone.value.code == "invalid_api_key"


def test_rotate_keeps_settings_and_revokes(store: KeyStore) -> None:
    old = store.create(KeySettings(name="svc", models=("a",), rpm=7, expires_in=timedelta(days=2)))
    new = store.rotate(old.record.id)
    assert new.key != old.key
    assert (new.record.name, new.record.model_list(), new.record.rpm) == ("svc", ["a"], 7)
    assert new.record.expires_at is not None
    before = store.get(old.record.id)
    assert before.revoked_at is not None and before.replaced_by == new.record.id
    assert store.authenticate(new.key).id == new.record.id


def test_unknown_id(store: KeyStore) -> None:
    with pytest.raises(KeyNotFound):
        store.revoke("key_nope")


def test_bootstrap(store: KeyStore) -> None:
    first = ensure_admin_key(store, None)
    assert first is not None and first.record.admin
    assert ensure_admin_key(store, None) is None  # only on an empty store
    env_key = "sk-pnv-" + "e" * 40
    assert ensure_admin_key(store, env_key) is None
    imported = store.authenticate(env_key)
    assert imported.admin and imported.name == "PINAIVU_API_KEY"
    store.revoke(imported.id)
    ensure_admin_key(store, env_key)  # a revoked env key is not resurrected
    with pytest.raises(AuthenticationError):
        store.authenticate(env_key)
    with pytest.raises(ConfigError, match="PINAIVU_API_KEY must look like"):
        ensure_admin_key(store, "hunter2")
