"""The database on a real Postgres server: the same frozen steps, one migrator at a time, clear errors."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import inspect, text
from sqlmodel import SQLModel

import pinaivu_local.keys.records
import pinaivu_local.requestlog.records  # noqa: F401
from pinaivu_local.errors import ConfigError
from pinaivu_local.storage import migrations
from pinaivu_local.storage.database import Database, database_url
from tests.helpers import free_port


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
