"""The gateway's database: one URL, SQLite (embedded default) or PostgreSQL, migrated by Alembic at start.

`TRITONE_DATABASE_URL` names it (`postgresql://user:password@host:5432/tritone`; `postgresql://` and
`postgres://` use psycopg 3); without it the database is the SQLite file `tritone.sqlite3` in the data
dir. Every store (jobs, voices, stream slots) goes through `Database.transaction()`, one code path for
both backends. On SQLite every transaction is `BEGIN IMMEDIATE` (one writer at a time, WAL, readers
never blocked by it); on PostgreSQL the connections are checked before use (`pool_pre_ping`), so a
database that went away and came back is used again without a restart.

Faults: a database that cannot be reached when the gateway starts is `DatabaseUnreachable`, whose
message names the host and port (never the password); one lost while running makes every query raise
`DatabaseUnavailable`, a 503 with Retry-After for the route that needed it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from tritone.gateway.errors import unavailable

SQLITE_FILE = "tritone.sqlite3"
MIGRATIONS = Path(__file__).parent / "migrations"
CONNECT_TIMEOUT_S = 5
MIGRATION_LOCK = 7_455_135_017  # PostgreSQL advisory lock held while a replica migrates (replicas start together)


class DatabaseUnreachable(Exception):
    """The database could not be reached (at start): the message names its host and port."""


class DatabaseUnavailable(Exception):
    """The database went away while running; routes answer 503 with Retry-After (gateway/errors.py)."""

    def api_error(self):
        return unavailable(f"the database is not reachable: {self}", "database_unavailable")


def default_url(data_dir: Path | str) -> str:
    return f"sqlite:///{Path(data_dir) / SQLITE_FILE}"


def normalize(url: str) -> URL:
    """`postgresql://` and `postgres://` -> psycopg 3's driver; anything else as given."""
    parsed = make_url(url.replace("postgres://", "postgresql://", 1) if url.startswith("postgres://") else url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _lost(error: BaseException) -> bool:
    return isinstance(error, (OperationalError, InterfaceError)) or \
        isinstance(error, DBAPIError) and error.connection_invalidated


class Database:
    def __init__(self, url: str, *, data_dir: Path | str | None = None):
        self.url = normalize(url)
        self.data_dir = Path(data_dir) if data_dir is not None else None
        if self.is_sqlite:
            if self.url.database and self.url.database != ":memory:":
                Path(self.url.database).parent.mkdir(parents=True, exist_ok=True)
            self.engine = create_engine(self.url, connect_args={"check_same_thread": False, "timeout": 30})
            event.listen(self.engine, "connect", _sqlite_connect)
            event.listen(self.engine, "begin", lambda connection: connection.exec_driver_sql("BEGIN IMMEDIATE"))
        else:
            self.engine = create_engine(self.url, pool_pre_ping=True, pool_size=5, max_overflow=10,
                                        connect_args={"connect_timeout": CONNECT_TIMEOUT_S})
        self._migrated = False
        self._lock = threading.Lock()

    @classmethod
    def for_settings(cls, settings) -> "Database":
        return cls(settings.database_url or default_url(settings.data_dir), data_dir=settings.data_dir)

    @property
    def is_sqlite(self) -> bool:
        return self.url.get_backend_name() == "sqlite"

    @property
    def shared(self) -> bool:
        """Whether other gateway replicas may use it too (a database server, not an embedded file)."""
        return not self.is_sqlite

    @property
    def where(self) -> str:
        """Where the database is, for messages: host:port/name, or the SQLite file; never the password."""
        if self.is_sqlite:
            return f"SQLite file {self.url.database}"
        return f"{self.url.get_backend_name()} at {self.url.host or 'localhost'}:{self.url.port or 5432}" \
               f"/{self.url.database or ''}"

    def migrate(self) -> None:
        """Bring the schema to the newest revision (`alembic upgrade head`), once per instance."""
        with self._lock:
            if self._migrated:
                return
            try:
                with self.engine.begin() as connection:
                    if not self.is_sqlite:
                        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
                    config = Config()
                    config.set_main_option("script_location", str(MIGRATIONS))
                    config.attributes["connection"] = connection
                    command.upgrade(config, "head")
            except OperationalError as error:
                raise DatabaseUnreachable(
                    f"cannot reach the database ({self.where}): {_reason(error)}; check TRITONE_DATABASE_URL "
                    "and that the database server is running") from None
            self._migrated = True

    def revision(self) -> str | None:
        with self.transaction() as connection:
            return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A connection in a transaction, committed at the end; a lost database raises DatabaseUnavailable."""
        try:
            with self.engine.begin() as connection:
                yield connection
        except DBAPIError as error:
            if _lost(error):
                raise DatabaseUnavailable(f"{self.where}: {_reason(error)}") from error
            raise

    def close(self) -> None:
        self.engine.dispose()


def _reason(error: DBAPIError) -> str:
    """The driver's first line, without SQLAlchemy's statement and link."""
    lines = str(error.orig or error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def _sqlite_connect(connection, _record) -> None:
    connection.isolation_level = None  # transactions are begun by the "begin" listener (BEGIN IMMEDIATE)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
