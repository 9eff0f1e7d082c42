"""Which API key owns which session and artefact (a small SQLite table in the state dir).

Another key asking for a session or artefact it does not own gets the same 404 as for an id
that does not exist: ids are unguessable and their existence is not revealed.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path


class Ownership:
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
