"""The trial rows of one experiment in SQLite (trials.db, WAL mode): one row per trial key.

An event writes one row in its own transaction, so its cost does not grow with the number of trials,
and a reader (status, export, plot, resume) sees every row either as it was or as it is now, never
half-written, while a driver writes. Rows are kept as the JSON text of TrialRecord.to_dict(), in the
order they were first recorded. synchronous=NORMAL: a killed process loses no committed row (only a
power cut may lose the last ones), and a commit does not wait for the disk.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path
from urllib.request import pathname2url

from scrfd_search.errors import UserError

DB_FILE = "trials.db"
SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 30.0
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS trials ("
    " seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    " trial_id TEXT NOT NULL UNIQUE,"
    " state TEXT NOT NULL,"
    " row TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS trials_state ON trials (state)",
)
_UPSERT = (
    "INSERT INTO trials (trial_id, state, row) VALUES (?, ?, ?) "
    "ON CONFLICT (trial_id) DO UPDATE SET state = excluded.state, row = excluded.row"
)


class TrialDatabase:
    """trials.db of one store: opened on first use, one connection per process (guarded by a lock)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def __getstate__(self) -> dict:
        """Pickled as its path alone (a connection does not travel)."""
        return {"path": self.path}

    def __setstate__(self, state: dict) -> None:
        """Rebuild from the path."""
        self.__init__(state["path"])  # type: ignore[misc]

    def exists(self) -> bool:
        """Whether the database file is there."""
        return self.path.is_file()

    def _open(self, create: bool) -> sqlite3.Connection | None:
        """The connection (None when the file is missing and create is False)."""
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        self._conn = None  # a connection inherited through fork is not used
        if not self.exists() and not create:
            return None
        mode = "rwc" if create else "rw"
        try:
            conn = self._connect(mode)
        except sqlite3.OperationalError:
            if create:
                raise UserError(f"{self.path}: cannot create the trials database (is the folder writable?)") from None
            conn = self._connect("ro")  # a store on a read-only mount: readable still
        try:
            self._prepare(conn, create)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise self._damaged(exc) from None
        self._conn, self._pid = conn, os.getpid()
        return conn

    def _connect(self, mode: str) -> sqlite3.Connection:
        """A connection in autocommit mode (transactions are explicit)."""
        uri = f"file:{pathname2url(str(self.path.absolute()))}?mode={mode}"
        return sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)

    def _prepare(self, conn: sqlite3.Connection, create: bool) -> None:
        """WAL mode and the table on a new file; the schema version checked on every open."""
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise UserError(
                f"{self.path}: trials database version {version} is newer than this scrfd-search reads "
                f"({SCHEMA_VERSION}); upgrade scrfd-search"
            )
        conn.execute("PRAGMA synchronous=NORMAL")
        if create and version == 0:
            conn.execute("PRAGMA journal_mode=WAL")
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        elif version == 0:
            raise UserError(f"{self.path}: not a trials database (no schema); rebuild it")

    def _damaged(self, exc: sqlite3.DatabaseError) -> UserError:
        """The one-line error of a file that is not (or no longer) a readable trials database.

        The connection is closed first, so a failed read leaves no WAL file behind.
        """
        if self._conn is not None and self._pid == os.getpid():
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
        self._conn = None
        return UserError(f"{self.path}: not a readable trials database ({exc})")

    def get(self, trial_id: str) -> str | None:
        """The JSON text of one row (None when there is no such row)."""
        with self._lock:
            conn = self._open(create=False)
            if conn is None:
                return None
            try:
                found = conn.execute("SELECT row FROM trials WHERE trial_id = ?", (trial_id,)).fetchone()
            except sqlite3.DatabaseError as exc:
                raise self._damaged(exc) from None
            return found[0] if found else None

    def rows(self) -> list[tuple[str, str]]:
        """(trial id, JSON text) of every row, in the order they were first recorded (one consistent read)."""
        with self._lock:
            conn = self._open(create=False)
            if conn is None:
                return []
            try:
                return conn.execute("SELECT trial_id, row FROM trials ORDER BY seq").fetchall()
            except sqlite3.DatabaseError as exc:
                raise self._damaged(exc) from None

    def count(self, states: Iterable[str]) -> int:
        """How many rows are in one of the states."""
        wanted = tuple(states)
        with self._lock:
            conn = self._open(create=False)
            if conn is None or not wanted:
                return 0
            marks = ",".join("?" * len(wanted))
            try:
                return conn.execute(f"SELECT COUNT(*) FROM trials WHERE state IN ({marks})", wanted).fetchone()[0]
            except sqlite3.DatabaseError as exc:
                raise self._damaged(exc) from None

    def put(self, trial_id: str, state: str, text: str) -> None:
        """Insert or replace one row (a new row goes last; a replaced one keeps its place)."""
        with self._lock:
            conn = self._open(create=True)
            assert conn is not None
            try:
                conn.execute(_UPSERT, (trial_id, state, text))
            except sqlite3.DatabaseError as exc:
                raise self._damaged(exc) from None

    def replace_all(self, rows: Iterable[tuple[str, str, str]]) -> None:
        """Make (trial id, state, JSON text) rows the whole content, in one transaction.

        A damaged file is replaced by a new one: every row is being rewritten anyway.
        """
        rows = list(rows)
        try:
            self._replace_all(rows)
        except UserError:
            self.discard()
            self._replace_all(rows)

    def _replace_all(self, rows: list[tuple[str, str, str]]) -> None:
        """replace_all on the file as it is."""
        with self._lock:
            conn = self._open(create=True)
            assert conn is not None
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("DELETE FROM trials")
                conn.executemany(_UPSERT, rows)
                conn.execute("COMMIT")
            except sqlite3.DatabaseError as exc:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise self._damaged(exc) from None

    def close(self) -> None:
        """Close the connection (it reopens on the next use)."""
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    def discard(self) -> None:
        """Remove the database and its WAL files."""
        self.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)
