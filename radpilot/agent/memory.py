"""Durable memory: the LangGraph checkpointer that holds every session's state.

By default a SQLite file (WAL) under the state directory: one process, no server. With
`RADPILOT_CHECKPOINT_URL` set, PostgreSQL on a connection pool, so that several API replicas
(or a restarted one on another host) share the same sessions.

Both use the same serializer with the same msgpack allow-list: only radpilot's own state types
are rebuilt from what the store holds, whichever store it is.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from radpilot.agent.state import PERSISTED_TYPES
from radpilot.core.errors import RadpilotError
from radpilot.settings import Settings

# Connections per process: the API runs turns on worker threads, each checkpoint write takes
# one connection for a few milliseconds; eight is plenty per replica and far below
# PostgreSQL's default max_connections (100) for a handful of replicas.
POOL_MAX_SIZE = 8
CONNECT_TIMEOUT_S = 5
# Serialises `setup()` (the table migrations) across replicas that start at the same time.
SETUP_LOCK_KEY = 0x7261647069  # "radpi"


class CheckpointStoreError(RadpilotError):
    code = "checkpoint_store_unavailable"


def open_checkpointer(settings: Settings) -> Any:
    """The checkpointer the settings ask for: PostgreSQL when `checkpoint_url` is set."""
    if settings.checkpoint_url:
        return open_postgres(settings.checkpoint_url)
    return open_sqlite(settings.state_dir)


def _serializer() -> Any:
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    return JsonPlusSerializer(allowed_msgpack_modules=PERSISTED_TYPES)


def open_sqlite(state_dir: Path) -> Any:
    from langgraph.checkpoint.sqlite import SqliteSaver

    state_dir.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(state_dir / "sessions.sqlite", check_same_thread=False)
    # WAL: a crash mid-write leaves the last committed checkpoint intact, and readers do not
    # block the writer.
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    saver = SqliteSaver(connection, serde=_serializer())
    saver.setup()
    return saver


def keep_latest_checkpoint(checkpointer: Any, thread_id: str) -> None:
    """Delete a thread's older checkpoints and their writes: crash recovery resumes from the
    latest one only (turns are checkpointed once, at their end), and the session's history
    is in `radpilot.agent.history`, so older ones are dead weight that grows every turn.
    PostgresSaver prunes natively (its channel blobs are shared between checkpoints); the
    SQLite saver has no `prune`, and with no `DeltaChannel` in the graph two deletes do."""
    from langgraph.checkpoint.sqlite import SqliteSaver

    if not isinstance(checkpointer, SqliteSaver):
        checkpointer.prune([thread_id], strategy="keep_latest")
        return
    with checkpointer.cursor() as cursor:
        for table in ("checkpoints", "writes"):
            cursor.execute(
                f"DELETE FROM {table} WHERE thread_id = ? AND checkpoint_id < ("
                " SELECT MAX(checkpoint_id) FROM checkpoints"
                f" WHERE thread_id = ? AND checkpoint_ns = {table}.checkpoint_ns)",
                (thread_id, thread_id),
            )


def shown_url(url: str) -> str:
    """The URL (or libpq `key=value` string) without its password, for messages."""
    if "://" not in url:
        return re.sub(r"password\s*=\s*('[^']*'|\S+)", "password=***", url)
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[-1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + host))


def open_postgres(url: str) -> Any:
    """A PostgresSaver on a pool, its tables created or migrated; clear errors otherwise."""
    try:
        import psycopg
        from langgraph.checkpoint.postgres import PostgresSaver
        from psycopg.rows import dict_row
    except ImportError:
        raise _not_installed("the PostgreSQL checkpointer") from None
    pool = open_pool(
        url,
        name="radpilot-checkpoints",
        max_size=POOL_MAX_SIZE,
        # What PostgresSaver expects of its connections (as its own from_conn_string sets).
        connection={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
    )
    saver = PostgresSaver(pool, serde=_serializer())
    try:
        _setup_once(pool, saver)
    except psycopg.Error as error:
        pool.close()
        raise CheckpointStoreError(
            f"could not create the checkpoint tables in {shown_url(url)}: "
            f"{_one_line(error, url)}; the user needs CREATE rights on that database"
        ) from None
    return saver


def open_pool(url: str, *, name: str, max_size: int, connection: dict[str, Any]) -> Any:
    """An open psycopg pool on `url` whose connections get the `connection` options; a clear
    `CheckpointStoreError` when the database cannot be reached or the driver is missing."""
    try:
        from psycopg_pool import ConnectionPool, PoolTimeout
    except ImportError:
        raise _not_installed("the PostgreSQL driver") from None
    _check_reachable(url)
    pool: Any = ConnectionPool(
        url,
        min_size=1,
        max_size=max_size,
        kwargs={**connection, "connect_timeout": CONNECT_TIMEOUT_S},
        # A connection broken by a database restart or failover is replaced on checkout,
        # instead of failing the next request (one round trip per checkout).
        check=ConnectionPool.check_connection,
        name=name,
        open=False,
    )
    try:
        pool.open(wait=True, timeout=CONNECT_TIMEOUT_S * 2)
    except PoolTimeout:
        pool.close()
        raise _unreachable(url, "no connection within the timeout") from None
    return pool


def _not_installed(what: str) -> CheckpointStoreError:
    return CheckpointStoreError(
        f"RADPILOT_CHECKPOINT_URL is set but {what} is not installed: "
        "pip install 'radpilot[postgres]', or unset RADPILOT_CHECKPOINT_URL to keep "
        "sessions in SQLite under the state dir"
    )


def _check_reachable(url: str) -> None:
    """Connect once before building the pool: the pool only retries and times out, while a
    direct connection says why it failed (refused, unknown host, authentication)."""
    import psycopg

    try:
        psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_S).close()
    except psycopg.Error as error:
        raise _unreachable(url, _one_line(error, url)) from None


def _unreachable(url: str, why: str) -> CheckpointStoreError:
    end = " " if why.endswith((".", "?", "!")) else ". "
    return CheckpointStoreError(
        f"cannot reach the checkpoint database at {shown_url(url)}: {why}{end}Check that "
        "PostgreSQL is running there and that the user and database exist (createdb), or "
        "unset RADPILOT_CHECKPOINT_URL to keep sessions in SQLite under the state dir"
    )


def _setup_once(pool: Any, saver: Any) -> None:
    """Run the migrations under a session-level advisory lock, so replicas that start together
    do not race to create the same tables (setup itself runs on another pooled connection)."""
    with pool.connection() as connection:
        connection.execute("SELECT pg_advisory_lock(%s)", (SETUP_LOCK_KEY,))
        try:
            saver.setup()
        finally:
            connection.execute("SELECT pg_advisory_unlock(%s)", (SETUP_LOCK_KEY,))


def _one_line(error: BaseException, url: str) -> str:
    """The driver's message on one line, with the URL's password blanked should it appear."""
    text = " ".join(str(error).split())
    password = urlsplit(url).password if "://" in url else None
    return text.replace(password, "***") if password else text
