"""Durable memory: a LangGraph SQLite checkpointer (WAL) under the state directory."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from radpilot.agent.state import PERSISTED_TYPES


def open_checkpointer(state_dir: Path) -> Any:
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
    from langgraph.checkpoint.sqlite import SqliteSaver

    state_dir.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(state_dir / "sessions.sqlite", check_same_thread=False)
    # WAL: a crash mid-write leaves the last committed checkpoint intact, and readers do not
    # block the writer.
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    saver = SqliteSaver(
        connection, serde=JsonPlusSerializer(allowed_msgpack_modules=PERSISTED_TYPES)
    )
    saver.setup()
    return saver
