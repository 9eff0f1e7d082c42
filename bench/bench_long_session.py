"""A 200-turn session over loopback: does turn 200 cost what turn 10 did, and does the session
database grow linearly?

One fresh `radpilot serve` (embedded planner, SQLite state), one session, one real image, the
same seven questions cycled. Prints, from one run:
- the last full cycle's time ÷ the second cycle's (target ≤ 1.10);
- the session's checkpoint bytes (its rows in LangGraph's tables) after turn 10 and turn 200;
- the database's growth per turn between turn 10 and the last turn: bytes in use in
  `sessions.sqlite` and `app.sqlite` (pages minus free pages, after a WAL checkpoint), which
  excludes the study and the artefacts (files in their own folders) (target ≤ 20 KB);
- errors (target 0), and that `GET /v1/sessions/{id}` returns every message.

    python bench/bench_long_session.py [--turns 200]
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_server import server
from common import Target, dev_images, write_results

QUESTIONS = [
    "Is there a pleural effusion?",
    "Where is it?",
    "How big is the heart?",
    "What do you see?",
    "Why did you say that?",
    "What do the guidelines say about a pneumothorax?",
    "Write a report.",
]
TARGETS = [
    Target("last_cycle_over_second", "<=", 1.10),
    Target("database_growth_kb_per_turn", "<=", 20, "KB"),
    Target("errors", "==", 0),
]


def bytes_in_use(database: Path) -> int:
    """Pages in use (not free) after moving the WAL into the main file."""
    with sqlite3.connect(database) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        pages = connection.execute("PRAGMA page_count").fetchone()[0]
        free = connection.execute("PRAGMA freelist_count").fetchone()[0]
        size = connection.execute("PRAGMA page_size").fetchone()[0]
    return int((pages - free) * size)


def checkpoint_bytes(database: Path, session_id: str) -> int:
    """The session's rows in LangGraph's checkpoint tables."""
    with sqlite3.connect(database) as connection:
        checkpoints = connection.execute(
            "SELECT COALESCE(SUM(LENGTH(checkpoint) + LENGTH(metadata)), 0) FROM checkpoints"
            " WHERE thread_id = ?", (session_id,),
        ).fetchone()[0]  # fmt: skip
        writes = connection.execute(
            "SELECT COALESCE(SUM(LENGTH(value)), 0) FROM writes WHERE thread_id = ?",
            (session_id,),
        ).fetchone()[0]
    return int(checkpoints + writes)


def databases_in_use(state: Path) -> int:
    return sum(bytes_in_use(state / name) for name in ("sessions.sqlite", "app.sqlite"))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=200)
    args = parser.parse_args()
    images = dev_images(1)
    if images is None:
        return 0
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.server
    from radpilot.app.client import Client

    cycles = args.turns // len(QUESTIONS)
    if cycles < 3:
        raise SystemExit(f"--turns must cover at least 3 cycles of {len(QUESTIONS)} questions")
    seconds: list[float] = []
    errors: list[str] = []
    marks: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as folder, server(Path(folder), 5.0) as (url, _, _):
        state = Path(folder)
        with Client(url, timeout=600) as client:
            session = client.create_session()
            client.upload_study(session, images[0])
            for turn in range(1, args.turns + 1):
                question = QUESTIONS[(turn - 1) % len(QUESTIONS)]
                started = time.perf_counter()
                try:
                    client.ask(session, question)
                except Exception as error:  # counted, and the benchmark goes on
                    errors.append(f"turn {turn}: {type(error).__name__}: {error}")
                seconds.append(time.perf_counter() - started)
                if turn in (10, args.turns):
                    marks[turn] = {
                        "checkpoint": checkpoint_bytes(state / "sessions.sqlite", session),
                        "in_use": databases_in_use(state),
                    }
                if turn % 50 == 0:
                    print(f"turn {turn}: {seconds[-1] * 1000:.0f} ms", flush=True)
            messages = len(client.session(session).messages)
    per_cycle = [sum(seconds[c * len(QUESTIONS) : (c + 1) * len(QUESTIONS)]) for c in range(cycles)]
    growth = (marks[args.turns]["in_use"] - marks[10]["in_use"]) / (args.turns - 10)
    results = {
        "turns": args.turns,
        "questions": QUESTIONS,
        "second_cycle_ms": round(per_cycle[1] * 1000, 1),
        "last_cycle_ms": round(per_cycle[-1] * 1000, 1),
        "last_cycle_over_second": round(per_cycle[-1] / per_cycle[1], 3),
        "checkpoint_kb_after_turn_10": round(marks[10]["checkpoint"] / 1024, 1),
        f"checkpoint_kb_after_turn_{args.turns}": round(marks[args.turns]["checkpoint"] / 1024, 1),
        "database_kb_in_use_after_turn_10": round(marks[10]["in_use"] / 1024, 1),
        f"database_kb_in_use_after_turn_{args.turns}": round(marks[args.turns]["in_use"] / 1024, 1),
        "database_growth_kb_per_turn": round(growth / 1024, 2),
        "messages_read_back": messages,
        "messages_expected": 2 * args.turns,
        "errors": len(errors),
        "error_examples": errors[:5],
    }
    for key, value in results.items():
        if key not in ("questions", "error_examples"):
            print(f"{key}: {value}")
    write_results("long_session", results, TARGETS)
    return 1 if errors or messages != 2 * args.turns else 0


if __name__ == "__main__":
    raise SystemExit(main())
