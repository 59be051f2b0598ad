"""The database on a real Postgres server: the same frozen steps, one migrator at a time, clear errors."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import inspect, text
from sqlmodel import SQLModel

import pinaivu_local.keys.records
import pinaivu_local.requestlog.records  # noqa: F401
from pinaivu_local.errors import ConfigError, StorageUnavailable
from pinaivu_local.keys.store import KeyStore
from pinaivu_local.storage import migrations
from pinaivu_local.storage.database import Database, database_url
from tests.helpers import free_port
from tests.shared_state import paused_postgres


def test_fresh_database_gets_every_step_and_the_models_columns(postgres_url: str) -> None:
    database = Database(postgres_url)
    try:
        assert database.dialect == "postgresql" and database.path is None
        with database.engine.connect() as conn:
            done = [row[0] for row in conn.execute(text("SELECT name FROM _migrations ORDER BY name"))]
            assert done == migrations.names()
            found = inspect(conn)
            for table in SQLModel.metadata.sorted_tables:
                assert {c["name"] for c in found.get_columns(table.name)} == {c.name for c in table.columns}
    finally:
        database.close()
    Database(postgres_url).close()  # a second open finds every step done


def test_concurrent_first_opens_all_succeed(postgres_url: str) -> None:
    """Gateways starting together: one migrates under the advisory lock, the others find it done."""
    with ThreadPoolExecutor(4) as pool:
        opened = list(pool.map(lambda _: Database(postgres_url), range(4)))
    for database in opened:
        database.close()


def test_an_unreachable_server_is_a_config_error_without_the_password() -> None:
    url = f"postgresql://someone:hunter2@127.0.0.1:{free_port()}/nowhere"
    with pytest.raises(ConfigError) as caught:
        Database(url)
    assert "cannot connect" in caught.value.message and "hunter2" not in caught.value.message


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgres://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
    ],
)
def test_plain_postgres_urls_mean_psycopg_3(url: str, expected: str) -> None:
    assert database_url(url) == expected


def test_other_databases_are_refused() -> None:
    with pytest.raises(ConfigError, match="mysql"):
        Database("mysql://u@h/db")


def test_every_connection_bounds_its_statements_lock_waits_and_silences(postgres_url: str) -> None:
    """The timeout on the server's side (a statement or a lock wait past it is cancelled: a 503) and TCP
    keepalives, on every pooled connection; a URL's own options win over ours."""
    database = Database(postgres_url, timeout_s=1.5)
    try:
        with database.connection() as conn:
            assert conn.exec_driver_sql("SHOW statement_timeout").scalar() == "1500ms"
            assert conn.exec_driver_sql("SHOW lock_timeout").scalar() == "1500ms"
            given = conn.connection.dbapi_connection.info.get_parameters()  # type: ignore[union-attr]
            assert given["keepalives"] == "1" and given["keepalives_idle"] == "2" and given["keepalives_count"] == "3"
        started = time.monotonic()
        with pytest.raises(StorageUnavailable, match="past the database timeout"), database.connection() as conn:
            conn.exec_driver_sql("SELECT pg_sleep(60)")
        assert time.monotonic() - started < 30
    finally:
        database.close()
    own = Database(postgres_url + "?options=-c%20statement_timeout%3D7000", timeout_s=1.5)
    try:
        with own.connection() as conn:
            assert conn.exec_driver_sql("SHOW statement_timeout").scalar() == "7s"
            assert conn.exec_driver_sql("SHOW lock_timeout").scalar() == "1500ms"
    finally:
        own.close()


def test_a_stopped_server_is_a_bounded_storage_unavailable_for_the_event_loop(postgres_url: str) -> None:
    """SIGSTOP: the connection stays open and nothing answers, so neither the server's timeouts nor TCP's
    end the wait; the event loop's call gives up after the bound, a 503, and works again once resumed."""
    database = Database(postgres_url, timeout_s=1)
    store = KeyStore(database)
    try:
        assert store.list() == []  # a pooled connection, which the next call pings first
        with paused_postgres(postgres_url):
            started = time.monotonic()
            with pytest.raises(StorageUnavailable, match="did not answer within 1 s"):
                asyncio.run(asyncio.wait_for(store.call(store.list), 20))
            assert time.monotonic() - started < 10
        assert asyncio.run(store.call(store.list)) == []
    finally:
        database.close()
