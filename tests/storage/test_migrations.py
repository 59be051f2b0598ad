"""Frozen schema steps: the same schema as the models, old files adopted, one migrator at a time."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Table, create_engine, inspect
from sqlmodel import SQLModel

# The record modules register their tables on SQLModel.metadata when imported.
import pinaivu_local.api.responses.store
import pinaivu_local.fleet.pins
import pinaivu_local.keys.records
import pinaivu_local.requestlog.records  # noqa: F401
from pinaivu_local.errors import ConfigError
from pinaivu_local.storage import migrations
from pinaivu_local.storage.database import Database, schema_version

MODEL_TABLES: list[Table] = SQLModel.metadata.sorted_tables
REPO = Path(__file__).resolve().parents[2]


def version_2_file(path: Path) -> Path:
    """A file as pinaivu-local wrote it before the steps were frozen (schema 2): no _migrations table."""
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        migrations.m001_api_keys(conn)
        migrations.m002_request_log(conn)
    engine.dispose()
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 2")
    conn.close()
    return path


def migrated(path: Path) -> Path:
    Database(path).close()
    return path


def created_from_models(path: Path) -> Path:
    """The schema today's model classes describe, built by create_all."""
    engine = create_engine(f"sqlite:///{path}")
    SQLModel.metadata.create_all(engine, tables=MODEL_TABLES)
    engine.dispose()
    return path


def sqlite_schema(path: Path) -> dict[str, Any]:
    """Every table's columns (name, type, not null, default, pk) and indexes (name, unique, columns)."""
    with sqlite3.connect(path) as conn:
        tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        schema: dict[str, Any] = {}
        for table in tables:
            columns = {row[1]: row[2:] for row in conn.execute(f"PRAGMA table_info({table})")}
            indexes = {
                name: (unique, [col[2] for col in conn.execute(f"PRAGMA index_info({name})")])
                for _, name, unique, *_ in conn.execute(f"PRAGMA index_list({table})")
            }
            schema[table] = (columns, indexes)
    conn.close()
    return schema


def rows(path: Path, query: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as conn:
        found = conn.execute(query).fetchall()
    conn.close()
    return found


def test_steps_build_what_create_all_built(tmp_path: Path) -> None:
    """Types, nullability, keys, defaults and indexes identical to what the models describe."""
    ours = sqlite_schema(migrated(tmp_path / "ours.db"))
    before = sqlite_schema(created_from_models(tmp_path / "before.db"))
    assert ours.pop("_migrations")
    assert ours == before


def test_steps_match_the_models(tmp_path: Path) -> None:
    """A model column without its migration (or the reverse) fails here, not on a user's file."""
    engine = create_engine(f"sqlite:///{migrated(tmp_path / 'pinaivu.db')}")
    try:
        found = inspect(engine)
        for table in MODEL_TABLES:
            columns = {c["name"]: c["nullable"] for c in found.get_columns(table.name)}
            assert columns == {c.name: c.nullable for c in table.columns}, table.name
            assert found.get_pk_constraint(table.name)["constrained_columns"] == [c.name for c in table.primary_key]
            indexes = {(tuple(i["column_names"]), bool(i["unique"])) for i in found.get_indexes(table.name)}
            assert indexes == {(tuple(c.name for c in i.columns), bool(i.unique)) for i in table.indexes}
    finally:
        engine.dispose()


def test_fresh_file_records_every_step(tmp_path: Path) -> None:
    path = migrated(tmp_path / "pinaivu.db")
    assert [name for (name,) in rows(path, "SELECT name FROM _migrations ORDER BY name")] == migrations.names()
    assert rows(path, "PRAGMA user_version") == [(schema_version(),)]


def test_a_second_open_changes_nothing(tmp_path: Path) -> None:
    path = migrated(tmp_path / "pinaivu.db")
    before = rows(path, "SELECT * FROM sqlite_master"), rows(path, "SELECT * FROM _migrations")
    migrated(path)
    assert (rows(path, "SELECT * FROM sqlite_master"), rows(path, "SELECT * FROM _migrations")) == before


def test_a_file_from_before_migrations_is_adopted(tmp_path: Path) -> None:
    """user_version 2 and no _migrations: steps 1 and 2 are recorded as done, not run again."""
    path = version_2_file(tmp_path / "pinaivu.db")
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO api_keys (id, name, prefix, key_hash, admin, models, created_at)"
            " VALUES ('key_old', 'kept', 'sk-pnv-ab', 'hash', 1, '', '2025-01-01 00:00:00')"
        )
    conn.close()
    schema = sqlite_schema(path)
    migrated(path)
    assert [name for (name,) in rows(path, "SELECT name FROM _migrations ORDER BY name")] == migrations.names()
    assert rows(path, "PRAGMA user_version") == [(schema_version(),)]
    assert rows(path, "SELECT name FROM api_keys") == [("kept",)]
    after = sqlite_schema(path)
    assert after.pop("_migrations")
    assert after.pop("responses")  # a table of a step after schema 2
    assert after.pop("node_pins")
    columns = after["request_log"][0]
    added = [
        columns.pop(name)
        for name in ("replay_of", "node", "receipt", "receipt_signature", "text_encoding", "usage_source")
    ]  # steps after schema 2
    assert columns.pop("receipt_verified") == ("BOOLEAN", 0, None, 0)
    assert added == [("VARCHAR", 0, None, 0)] * 6 and after == schema


def test_a_half_created_file_still_opens(tmp_path: Path) -> None:
    """Old code created tables outside a transaction: a table may exist while user_version is 0."""
    path = version_2_file(tmp_path / "pinaivu.db")
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 0")
    conn.close()
    migrated(path)
    assert rows(path, "PRAGMA user_version") == [(schema_version(),)]


def test_an_unknown_step_is_refused(tmp_path: Path) -> None:
    path = migrated(tmp_path / "pinaivu.db")
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO _migrations VALUES ('m999_future', '2099-01-01 00:00:00')")
    conn.close()
    with pytest.raises(ConfigError, match=r"newer pinaivu-local \(migrations m999_future\)"):
        Database(path)


def test_a_failing_step_leaves_the_file_as_it_was(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """All steps run in one transaction: a failure rolls back the ones before it too."""

    def m999_broken(conn: Any) -> None:
        conn.exec_driver_sql("CREATE TABLE half_done (id INTEGER)")
        conn.exec_driver_sql("SELECT * FROM no_such_table")

    monkeypatch.setattr(migrations, "MIGRATIONS", [*migrations.MIGRATIONS, m999_broken])
    path = tmp_path / "pinaivu.db"
    with pytest.raises(ConfigError, match="cannot bring the schema up to date"):
        Database(path)
    assert rows(path, "SELECT name FROM sqlite_master") == []
    assert rows(path, "PRAGMA user_version") == [(0,)]


# Imports first, then waits on stdin: the parent releases all openers at the same moment.
OPENER = """
import sys
from pathlib import Path
from pinaivu_local.storage.database import Database
print("ready", flush=True)
sys.stdin.readline()
Database(Path(sys.argv[1])).close()
"""


def open_at_once(path: Path, count: int) -> list[subprocess.CompletedProcess[str]]:
    """`count` processes opening the same new file at the same moment; their results."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", OPENER, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(count)
    ]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return results


def test_concurrent_first_opens_all_succeed(tmp_path: Path) -> None:
    """Four processes on a fresh data dir: one migrates, the others wait and find it done."""
    for attempt in range(2):  # the race (before the lock) lost most rounds; two make a miss unlikely
        path = tmp_path / f"round{attempt}" / "pinaivu.db"
        for result in open_at_once(path, 4):
            assert (result.returncode, result.stderr) == (0, "")
        assert [name for (name,) in rows(path, "SELECT name FROM _migrations ORDER BY name")] == migrations.names()
