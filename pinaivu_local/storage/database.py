"""The database: one SQLite file in the data dir (created 0600, WAL journal) or, shared by several
gateways, a Postgres server named by PINAIVU_DATABASE_URL; the schema is migrated at open."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import math
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ParamSpec, TypeVar, cast

from sqlalchemy import Select, Table, event, make_url
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import (
    ArgumentError,
    DatabaseError,
    DataError,
    DBAPIError,
    IntegrityError,
    NotSupportedError,
    OperationalError,
    ProgrammingError,
    SQLAlchemyError,
)
from sqlmodel import Session, create_engine

from pinaivu_local.errors import ConfigError, InternalError, StorageUnavailable
from pinaivu_local.storage import migrations
from pinaivu_local.storage.workers import Workers

P = ParamSpec("P")
T = TypeVar("T")

log = logging.getLogger(__name__)

# How long a statement waits for another process's write lock before it fails.
BUSY_TIMEOUT_S = 10.0

# A database server's bound (PINAIVU_DB_TIMEOUT_S): on its connects, statements, lock waits, pool
# checkouts, and on each call the event loop awaits (Database.call).
TIMEOUT_S = 5.0

# Threads for the calls the event loop awaits: each may hold a pooled connection (SQLAlchemy's default
# pool: 5 kept, 10 more at need).
WORKERS = 15

# The pause between tries to switch a new file to WAL while another process holds its lock.
_WAL_RETRY_S = 0.01

# Database errors that come from our statements, not from the file or the disk.
_OUR_BUGS = (IntegrityError, ProgrammingError, DataError, NotSupportedError)

# SQLite's result codes (their name's prefix) in a few words that name no file.
_CAUSES = (
    ("SQLITE_FULL", "the disk is full"),
    ("SQLITE_BUSY", "the database is locked by another process"),
    ("SQLITE_LOCKED", "the database is locked by another process"),
    ("SQLITE_READONLY", "the database is read-only"),
    ("SQLITE_IOERR", "disk I/O error"),
    ("SQLITE_CANTOPEN", "the database file cannot be opened"),
    ("SQLITE_CORRUPT", "the database file is damaged"),
    ("SQLITE_NOTADB", "the database file is damaged"),
)

# Any fixed number: the advisory lock that serialises migrations of gateways starting together.
_MIGRATION_LOCK = 0x70696E61  # "pina"


def schema_version() -> int:
    """The schema version this code writes (the number of migrations)."""
    return len(migrations.MIGRATIONS)


class Database:
    """The engine of the SQLite file or the Postgres server; sessions for the stores built on it."""

    def __init__(
        self, target: Path | str, *, busy_timeout_s: float = BUSY_TIMEOUT_S, timeout_s: float = TIMEOUT_S
    ) -> None:
        self._compiled: dict[Select[Any], tuple[str, tuple[str, ...], dict[str, Any]]] = {}  # first_row's statements
        # How long the event loop awaits a call: unbounded on a SQLite file, whose lock waits the busy
        # timeout bounds and whose disk does not go away; `timeout_s` on a server, which can stall.
        self.call_timeout_s: float | None
        if isinstance(target, Path):
            self.path: Path | None = target
            self.where = str(target)
            self.engine = _open_engine(target, busy_timeout_s)
            self.call_timeout_s = None
        else:
            self.path = None
            self.engine = _open_server(target, timeout_s)
            self.where = self.engine.url.render_as_string(hide_password=True)
            self.call_timeout_s = timeout_s
        self._workers = Workers("database", WORKERS)
        try:
            self._migrate()
        except BaseException:
            self.engine.dispose()
            raise

    @property
    def _driver_error(self) -> type[Exception]:
        """The base class of the driver's exceptions (sqlite3.Error, psycopg.Error)."""
        return cast(type[Exception], self.engine.dialect.loaded_dbapi.Error)

    @property
    def dialect(self) -> str:
        """`sqlite` or `postgresql`."""
        return self.engine.dialect.name

    def insert(self, table: Table) -> Any:
        """An INSERT of this dialect, which knows ON CONFLICT DO NOTHING (both dialects have it)."""
        return (sqlite.insert if self.dialect == "sqlite" else postgresql.insert)(table)

    def _migrate(self) -> None:
        try:
            if self.dialect == "sqlite":
                self._migrate_sqlite()
            else:
                self._migrate_server()
        except SQLAlchemyError as exc:
            raise ConfigError(f"{self.where}: cannot bring the schema up to date ({exc.args[0]})") from None

    def _migrate_sqlite(self) -> None:
        with self.engine.connect() as conn:
            # IMMEDIATE takes the write lock now rather than at the first write: of several
            # processes opening a fresh file at once, one migrates while the others wait
            # (busy_timeout), then find every step recorded and skip them.
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            version = _user_version(conn)
            if version > schema_version():
                raise self._newer(f"schema {version}")
            self._apply(conn, version)
            # user_version mirrors the step count, for older pinaivu-locals and `doctor`.
            if version != schema_version():
                conn.exec_driver_sql(f"PRAGMA user_version = {schema_version()}")
            conn.commit()

    def _migrate_server(self) -> None:
        with self.engine.connect() as conn:
            # A step may rewrite a large table, and the lock below waits for another gateway's steps:
            # neither is bounded by the timeouts every connection has (_server_bounds).
            conn.exec_driver_sql("SET LOCAL statement_timeout = 0")
            conn.exec_driver_sql("SET LOCAL lock_timeout = 0")
            # DDL is transactional on Postgres: the steps and their bookkeeping commit together, and
            # of several gateways starting at once one migrates while the others wait on this lock.
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")
            self._apply(conn, 0)
            conn.commit()

    def _apply(self, conn: Connection, legacy_version: int) -> None:
        done = migrations.applied(conn, legacy_version=legacy_version)
        unknown = sorted(done - set(migrations.names()))
        if unknown:
            raise self._newer(f"migrations {', '.join(unknown)}")
        migrations.apply(conn, done)

    def _newer(self, what: str) -> ConfigError:
        return ConfigError(f"{self.where}: written by a newer pinaivu-local ({what}); upgrade to open it")

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session. The file's errors become StorageUnavailable (disk full, locked, I/O: a 503), other
        database errors InternalError (a bug of ours); neither message names the file, which only the
        server log does: these messages reach clients."""
        with self._errors_named(), Session(self.engine, expire_on_commit=False) as session:
            yield session

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        """A Core connection, where the ORM's bookkeeping costs more than the statement (the key lookup of
        every request, the request log's commits); errors as session() has them."""
        with self._errors_named(), self.engine.connect() as conn:
            yield conn

    def first_row(self, statement: Select[Any], params: dict[str, Any]) -> tuple[Any, ...] | None:
        """The first row of a SELECT as the driver returns it, with no type conversion, run on a pooled
        connection without SQLAlchemy's Connection around it: for the key lookup of every request, where
        that wrapper cost five times the query itself (120 us against 23 on SQLite). Errors as session()
        has them; parameters go to the driver as they are (strings, numbers)."""
        sql, names, fixed = self._driver_sql(statement)
        given = {**fixed, **params}
        args: tuple[Any, ...] | dict[str, Any] = tuple(given[n] for n in names) if names else given
        with self._errors_named():
            raw = self.engine.raw_connection()
            try:
                cursor = raw.cursor()
                try:
                    cursor.execute(sql, args)
                    return cast(tuple[Any, ...] | None, cursor.fetchone())
                except self._driver_error as exc:
                    if self.engine.dialect.is_disconnect(cast(Any, exc), raw.dbapi_connection, cursor):
                        raw.invalidate(exc)  # a server that went away: this connection is not reused
                    raise
                finally:
                    cursor.close()
            finally:
                raw.close()

    async def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """fn(*args, **kwargs), which blocks on this database, run for the event loop on a worker thread; on a
        server, a call not answered within the timeout (a stalled or cut-off server) is StorageUnavailable."""
        future = self._workers.submit(functools.partial(contextvars.copy_context().run, fn, *args, **kwargs))
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), self.call_timeout_s)
        except TimeoutError:
            if future.done() and not future.cancelled():
                raise  # fn's own TimeoutError
            # The thread waits on until the server answers or the keepalives give the connection up;
            # the request does not.
            cause = f"the database did not answer within {self.call_timeout_s:g} s"
            log.warning("database %s: %s", self.where, cause)
            raise StorageUnavailable(
                f"The server's storage is unavailable ({cause}); retry later.", reason=cause
            ) from None

    def _driver_sql(self, statement: Select[Any]) -> tuple[str, tuple[str, ...], dict[str, Any]]:
        """The statement in this driver's SQL, the order of its parameters when they are positional, and
        the values of those it fixes itself (literals)."""
        known = self._compiled.get(statement)
        if known is None:
            compiled = statement.compile(dialect=self.engine.dialect)
            fixed = {name: bind.value for name, bind in compiled.binds.items() if bind.value is not None}
            known = self._compiled[statement] = (str(compiled), tuple(compiled.positiontup or ()), fixed)
        return known

    @contextmanager
    def _errors_named(self) -> Iterator[None]:
        """The database's errors as StorageUnavailable or InternalError, their cause in the server log only."""
        try:
            yield
        except (SQLAlchemyError, self._driver_error) as caught:
            # The driver's own errors: first_row's, and those of opening a connection (our pragmas)
            exc = (
                caught
                if isinstance(caught, SQLAlchemyError)
                else DBAPIError.instance(None, None, caught, self._driver_error)
            )
            cause = describe(exc)
            log.warning("database %s: %s (%s)", self.where, cause, exc.args[0] if exc.args else exc.__class__.__name__)
            if isinstance(exc, DatabaseError) and not isinstance(exc, _OUR_BUGS):
                raise StorageUnavailable(
                    f"The server's storage is unavailable ({cause}); retry later.", reason=cause
                ) from None
            raise InternalError(
                "The server had a database error (a bug in pinaivu-local, logged on the server); retry the request."
            ) from None

    def close(self) -> None:
        """Release the connections and the worker threads."""
        self._workers.close()
        self.engine.dispose()


def describe(exc: BaseException) -> str:
    """The cause of a database error in a few words, naming no file (for clients and /health)."""
    original = getattr(exc, "orig", None) or exc
    name = str(getattr(original, "sqlite_errorname", ""))
    for prefix, words in _CAUSES:
        if name.startswith(prefix):
            return words
    if original.__class__.__module__.startswith("psycopg") and isinstance(exc, OperationalError):
        sqlstate = getattr(original, "sqlstate", None)
        if sqlstate == "57014":  # query_canceled: the statement_timeout of _server_bounds
            return "a statement ran past the database timeout"
        if sqlstate == "55P03":  # lock_not_available: its lock_timeout
            return "a lock wait ran past the database timeout"
        return "the database server is unreachable"
    return f"database error ({name or original.__class__.__name__})"


def _open_engine(path: Path, busy_timeout_s: float) -> Engine:
    """A SQLite engine on a file created 0600, in WAL mode; a commit returns once it is on disk."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
        os.chmod(path, 0o600)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot open the database ({exc.strerror})") from None
    engine = create_engine(f"sqlite:///{path}", connect_args={"check_same_thread": False, "timeout": busy_timeout_s})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        _enter_wal(cursor, busy_timeout_s)
        # FULL: every commit syncs the WAL, so a record is durable when its commit returns, across a
        # power cut too (NORMAL only survives a crash of the process). The request log commits in
        # groups, so the sync is paid once per batch, not per request.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
        cursor.close()

    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except SQLAlchemyError as exc:
        engine.dispose()
        raise ConfigError(f"{path}: not a usable SQLite database ({exc.args[0]})") from None
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            os.chmod(side, 0o600)
    return engine


def _enter_wal(cursor: Any, timeout_s: float) -> None:
    """Switch the file to WAL, retrying while another process holds it, for up to `timeout_s`."""
    # Of processes opening a new file together, the ones that find it still in rollback mode need
    # its exclusive lock to switch it; SQLite answers SQLITE_BUSY at once there, without the busy
    # handler (waiting could deadlock two readers), so the wait is ours. Once the file is in WAL
    # the pragma takes no lock and succeeds the first time.
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if getattr(exc, "sqlite_errorname", "") != "SQLITE_BUSY" or time.monotonic() >= deadline:
                raise
            time.sleep(_WAL_RETRY_S)


def database_url(url: str) -> str:
    """The SQLAlchemy URL of a Postgres server: `postgresql://` and `postgres://` mean psycopg 3."""
    for scheme in ("postgresql://", "postgres://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme) :]
    return url


def _open_server(url: str, timeout_s: float) -> Engine:
    """An engine on a Postgres server (psycopg 3), every wait bounded by `timeout_s`; ConfigError when it
    cannot be reached at start."""
    try:
        parsed = make_url(database_url(url))
    except ArgumentError:
        raise ConfigError(
            "PINAIVU_DATABASE_URL is not a database URL (postgresql+psycopg://user@host:port/db)"
        ) from None
    if parsed.get_backend_name() != "postgresql":
        raise ConfigError(
            f"PINAIVU_DATABASE_URL: {parsed.get_backend_name()!r} is not supported; use postgresql+psycopg://"
        )
    # pre_ping: a connection the server closed (restart, idle timeout) is replaced, not handed out.
    # pool_timeout: a call waits this long at most for a connection held by calls stuck on a stalled server.
    engine = create_engine(
        parsed, pool_pre_ping=True, pool_timeout=timeout_s, connect_args=_server_bounds(parsed.query, timeout_s)
    )
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except SQLAlchemyError as exc:
        engine.dispose()
        where = parsed.render_as_string(hide_password=True)
        raise ConfigError(f"{where}: cannot connect to the database ({describe(exc)})") from None
    return engine


def _server_bounds(query: Mapping[str, Any], timeout_s: float) -> dict[str, Any]:
    """libpq's connection parameters that bound every wait on the server by about `timeout_s`, except
    those the URL sets itself (its `options` go after ours, so its own `-c` settings win)."""
    seconds = max(1, math.ceil(timeout_s))
    ms = max(1, round(timeout_s * 1000))
    bounds: dict[str, Any] = {
        "connect_timeout": max(2, seconds),  # libpq's least
        # On the server: a statement, or a wait for a lock, that runs past the bound is cancelled.
        "options": f"-c statement_timeout={ms} -c lock_timeout={ms}",
        # A server that vanished (a partition: nothing comes back, not even TCP's acknowledgements)
        # drops the connection after about four bounds, where TCP alone would wait for many minutes;
        # a thread waiting on it returns. (A server that stopped but whose host still answers TCP keeps
        # its connections: only Database.call's bound helps the event loop there.)
        "keepalives": 1,
        "keepalives_idle": seconds,
        "keepalives_interval": seconds,
        "keepalives_count": 3,
        "tcp_user_timeout": 4 * ms,
    }
    if "options" in query:
        given = query["options"]
        bounds["options"] += " " + (given if isinstance(given, str) else " ".join(given))
    return {name: value for name, value in bounds.items() if name == "options" or name not in query}


def _user_version(conn: Connection) -> int:
    return int(conn.exec_driver_sql("PRAGMA user_version").scalar() or 0)
