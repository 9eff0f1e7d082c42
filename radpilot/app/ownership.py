"""Which API key owns which session and artefact.

Another key asking for a session or artefact it does not own gets the same 404 as for an id
that does not exist: ids are unguessable and their existence is not revealed.

Two stores behind one interface, picked by `open_ownership` from the settings as the
checkpointer is: a small SQLite file in the state dir (one API process, or replicas on one
host sharing it), or, with `RADPILOT_CHECKPOINT_URL` set, two tables in that PostgreSQL
database, so that API replicas on several hosts agree on who owns what.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any, Protocol

from radpilot.settings import Settings

# The owner of every session when no API key is configured (loopback-only use).
LOCAL_OWNER = "local"
# Connections per API process: each ownership check is one short query, so a few suffice
# beside the checkpointer's pool (radpilot.agent.memory.POOL_MAX_SIZE).
POOL_MAX_SIZE = 4
# Prefixed: the tables share the database with LangGraph's `checkpoint*` tables.
POSTGRES_TABLES = (
    "CREATE TABLE IF NOT EXISTS radpilot_session_owners ("
    " session_id TEXT PRIMARY KEY, owner TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS radpilot_artefact_sessions ("
    " artefact_id TEXT PRIMARY KEY, session_id TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS radpilot_artefact_sessions_session"
    " ON radpilot_artefact_sessions (session_id)",
)


class Ownership(Protocol):
    def add_session(self, session_id: str, owner: str) -> None: ...

    def owns_session(self, owner: str, session_id: str) -> bool: ...

    def remove_session(self, session_id: str) -> None:
        """Forget the session and its artefacts (a deleted session's ids must not resolve)."""
        ...

    def add_artefacts(self, session_id: str, artefact_ids: list[str]) -> None:
        """Record artefacts of the session; ids already recorded are kept as they are."""
        ...

    def session_of_artefact(self, artefact_id: str) -> str | None: ...


def open_ownership(settings: Settings) -> Ownership:
    """The store the settings ask for: PostgreSQL when `checkpoint_url` is set (the sessions
    live there too), else SQLite under the state dir."""
    if settings.checkpoint_url:
        return PostgresOwnership(settings.checkpoint_url)
    return SqliteOwnership(settings.state_dir)


class SqliteOwnership:
    """`<state_dir>/app.sqlite`, one connection behind a lock."""

    def __init__(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(state_dir / "app.sqlite", check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS sessions (session_id TEXT PRIMARY KEY, owner TEXT)"
        )
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS artefacts (artefact_id TEXT PRIMARY KEY, session_id TEXT)"
        )
        self._db.commit()
        self._lock = threading.Lock()

    def add_session(self, session_id: str, owner: str) -> None:
        with self._lock, self._db:
            self._db.execute("INSERT INTO sessions VALUES (?, ?)", (session_id, owner))

    def owns_session(self, owner: str, session_id: str) -> bool:
        with self._lock:
            row = self._db.execute(
                "SELECT owner FROM sessions WHERE session_id = ?", (session_id,)
            ).fetchone()
        return row is not None and row[0] == owner

    def remove_session(self, session_id: str) -> None:
        with self._lock, self._db:
            self._db.execute("DELETE FROM sessions WHERE session_id = ?", (session_id,))
            self._db.execute("DELETE FROM artefacts WHERE session_id = ?", (session_id,))

    def add_artefacts(self, session_id: str, artefact_ids: list[str]) -> None:
        with self._lock, self._db:
            self._db.executemany(
                "INSERT OR IGNORE INTO artefacts VALUES (?, ?)",
                [(artefact_id, session_id) for artefact_id in artefact_ids],
            )

    def session_of_artefact(self, artefact_id: str) -> str | None:
        with self._lock:
            row = self._db.execute(
                "SELECT session_id FROM artefacts WHERE artefact_id = ?", (artefact_id,)
            ).fetchone()
        return None if row is None else str(row[0])


class PostgresOwnership:
    """Two tables in the checkpoint database, on a small pool of its own (a connection broken
    by a restart or failover is replaced on checkout, as for the checkpointer)."""

    def __init__(self, url: str) -> None:
        import psycopg

        from radpilot.agent.memory import (
            SETUP_LOCK_KEY,
            CheckpointStoreError,
            open_pool,
            shown_url,
        )

        # Each `with pool.connection()` block is one transaction: committed at its end.
        self._pool: Any = open_pool(
            url, name="radpilot-ownership", max_size=POOL_MAX_SIZE, connection={}
        )
        try:
            with self._pool.connection() as connection:
                # Replicas starting together would race on CREATE TABLE IF NOT EXISTS.
                connection.execute("SELECT pg_advisory_xact_lock(%s)", (SETUP_LOCK_KEY,))
                for statement in POSTGRES_TABLES:
                    connection.execute(statement)
        except psycopg.Error as error:
            self._pool.close()
            raise CheckpointStoreError(
                f"could not create the session-owner tables in {shown_url(url)}: "
                f"{' '.join(str(error).split())}; the user needs CREATE rights on that database"
            ) from None

    def add_session(self, session_id: str, owner: str) -> None:
        with self._pool.connection() as connection:
            connection.execute(
                "INSERT INTO radpilot_session_owners VALUES (%s, %s)", (session_id, owner)
            )

    def owns_session(self, owner: str, session_id: str) -> bool:
        with self._pool.connection() as connection:
            row = connection.execute(
                "SELECT owner FROM radpilot_session_owners WHERE session_id = %s", (session_id,)
            ).fetchone()
        return row is not None and row[0] == owner

    def remove_session(self, session_id: str) -> None:
        with self._pool.connection() as connection:
            connection.execute(
                "DELETE FROM radpilot_session_owners WHERE session_id = %s", (session_id,)
            )
            connection.execute(
                "DELETE FROM radpilot_artefact_sessions WHERE session_id = %s", (session_id,)
            )

    def add_artefacts(self, session_id: str, artefact_ids: list[str]) -> None:
        if not artefact_ids:
            return
        with self._pool.connection() as connection, connection.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO radpilot_artefact_sessions VALUES (%s, %s) ON CONFLICT DO NOTHING",
                [(artefact_id, session_id) for artefact_id in artefact_ids],
            )

    def session_of_artefact(self, artefact_id: str) -> str | None:
        with self._pool.connection() as connection:
            row = connection.execute(
                "SELECT session_id FROM radpilot_artefact_sessions WHERE artefact_id = %s",
                (artefact_id,),
            ).fetchone()
        return None if row is None else str(row[0])

    def close(self) -> None:
        """Give the pooled connections back (a process that ends need not call it)."""
        self._pool.close()
