"""A session's complete record, append-only: every message and every piece of evidence.

The graph's checkpointed state keeps only what the next turn needs (the dialogue focus, the
last few messages, the evidence they and the focus cite, counters), so a turn reads and writes
the same amount at turn 200 as at turn 5. Everything else lives here, one row per message and
one per evidence, each written once (zlib-compressed JSON: evidence tables compress about
5×) and read only when a client asks for the whole session, or deletes it.

Rows are numbered by the state's counters (`message_count`, `evidence_count`) and written by
the turn's last node, just before the turn's checkpoint. The checkpoint is the source of
truth: a turn cut off between the two leaves rows numbered past the checkpointed counters;
they are not read, and the retried turn overwrites them (an upsert on the same numbers).

Same tables on SQLite (inside `sessions.sqlite`, on the checkpointer's own connection) and on
PostgreSQL (beside LangGraph's tables, on its pool).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from pydantic import BaseModel

from radpilot.agent.memory import SETUP_LOCK_KEY
from radpilot.agent.types import Message, StudyRef
from radpilot.core.contracts import Evidence

MESSAGES, EVIDENCE = "radpilot_session_messages", "radpilot_session_evidence"
TABLES = (
    f"CREATE TABLE IF NOT EXISTS {MESSAGES} ("
    " session_id TEXT NOT NULL, seq INTEGER NOT NULL, body BLOB NOT NULL,"
    " PRIMARY KEY (session_id, seq))",
    f"CREATE TABLE IF NOT EXISTS {EVIDENCE} ("
    " session_id TEXT NOT NULL, seq INTEGER NOT NULL, body BLOB NOT NULL,"
    " PRIMARY KEY (session_id, seq))",
)
# The same upsert on SQLite (3.24+) and PostgreSQL: a retried turn overwrites a cut-off one.
UPSERT = ("INSERT INTO {} VALUES (%s, %s, %s) ON CONFLICT (session_id, seq) "
          "DO UPDATE SET body = excluded.body")  # fmt: skip


def evidence_number(evidence_id: str) -> int:
    """E12 -> 12 (the ledger numbers evidence E1, E2, ... per session)."""
    return int(evidence_id.removeprefix("E"))


def pack(model: BaseModel) -> bytes:
    return zlib.compress(model.model_dump_json().encode())


class SessionRecord(BaseModel):
    """The whole session as clients see it."""

    messages: list[Message]
    evidence: list[Evidence]
    studies: list[StudyRef] = []

    def artefact_ids(self) -> list[str]:
        """Every artefact the session's turns produced: the ledger's, and those of the
        answers' copies of evidence, so that nothing a client was shown is left behind."""
        answers = [m.answer for m in self.messages if m.answer is not None]
        evidence = [*self.evidence, *(e for answer in answers for e in answer.evidence)]
        return list(dict.fromkeys(a.id for e in evidence for a in e.artefacts))


class _Sqlite:
    """`sessions.sqlite`, on the SqliteSaver's own connection and lock."""

    def __init__(self, saver: Any) -> None:
        self._db, self._lock = saver.conn, saver.lock

    @contextmanager
    def transaction(self) -> Iterator[Callable[[str, list[Any]], None]]:
        with self._lock, self._db:
            yield lambda sql, rows: self._db.executemany(sql.replace("%s", "?"), rows)

    def create(self, statements: list[str]) -> None:
        with self._lock, self._db:
            for statement in statements:
                self._db.execute(statement)

    def bodies(self, sql: str, args: tuple[Any, ...]) -> list[bytes]:
        with self._lock:
            return [bytes(row[0]) for row in self._db.execute(sql.replace("%s", "?"), args)]


class _Postgres:
    """Beside LangGraph's tables, on the PostgresSaver's pool (autocommit connections: a
    write is one explicit transaction; rows come back as dicts)."""

    def __init__(self, saver: Any) -> None:
        self._pool = saver.conn

    @contextmanager
    def transaction(self) -> Iterator[Callable[[str, list[Any]], None]]:
        with (
            self._pool.connection() as connection,
            connection.transaction(),
            connection.cursor() as cursor,
        ):
            yield lambda sql, rows: cursor.executemany(sql, rows) if rows else None

    def create(self, statements: list[str]) -> None:
        with self._pool.connection() as connection, connection.transaction():
            # Replicas starting together would race on CREATE TABLE IF NOT EXISTS.
            connection.execute("SELECT pg_advisory_xact_lock(%s)", (SETUP_LOCK_KEY,))
            for statement in statements:
                connection.execute(statement.replace("BLOB", "BYTEA"))

    def bodies(self, sql: str, args: tuple[Any, ...]) -> list[bytes]:
        with self._pool.connection() as connection:
            return [bytes(row["body"]) for row in connection.execute(sql, args).fetchall()]


class SessionHistory:
    """The two tables, on SQLite or PostgreSQL (the same SQL; `%s` becomes `?` on SQLite)."""

    def __init__(self, database: _Sqlite | _Postgres) -> None:
        self._database = database
        database.create(list(TABLES))

    def write(
        self, session_id: str, messages: list[tuple[int, Message]], evidence: list[Evidence]
    ) -> None:
        """Store numbered messages and evidence; a number already stored is overwritten."""
        with self._database.transaction() as run:
            for table, rows in (
                (MESSAGES, [(session_id, seq, pack(m)) for seq, m in messages]),
                (EVIDENCE, [(session_id, evidence_number(e.id), pack(e)) for e in evidence]),
            ):
                run(UPSERT.format(table), rows)

    def read(self, session_id: str, *, messages: int, evidence: int) -> SessionRecord:
        """The first `messages` messages (numbered from 0) and evidence E1..E`evidence`."""
        query = "SELECT body FROM {} WHERE session_id = %s AND seq <= %s ORDER BY seq"
        bodies = self._database.bodies
        return SessionRecord(
            messages=[Message.model_validate_json(zlib.decompress(b))
                      for b in bodies(query.format(MESSAGES), (session_id, messages - 1))],
            evidence=[Evidence.model_validate_json(zlib.decompress(b))
                      for b in bodies(query.format(EVIDENCE), (session_id, evidence))],
        )  # fmt: skip

    def read_all(self, session_id: str) -> SessionRecord:
        """Every row, cut-off turns included (for deletion: their artefacts are on disk)."""
        return self.read(session_id, messages=2**62, evidence=2**62)

    def delete(self, session_id: str) -> None:
        with self._database.transaction() as run:
            for table in (MESSAGES, EVIDENCE):
                run(f"DELETE FROM {table} WHERE session_id = %s", [(session_id,)])


def open_history(checkpointer: Any) -> SessionHistory:
    """The history store beside `checkpointer` (same database, same connections)."""
    from langgraph.checkpoint.sqlite import SqliteSaver

    if isinstance(checkpointer, SqliteSaver):
        return SessionHistory(_Sqlite(checkpointer))
    return SessionHistory(_Postgres(checkpointer))
