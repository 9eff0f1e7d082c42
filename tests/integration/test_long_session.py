"""Long sessions on SQLite and PostgreSQL: a turn's state stays bounded, one checkpoint per
thread is kept, and nothing is lost: the whole history and evidence read back, after a restart
too, and deletion removes all of it."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from radpilot.agent.service import Agent, SessionNotFoundError
from radpilot.agent.state import RECENT_MESSAGES
from radpilot.assembly import build_agent
from radpilot.settings import Settings
from radpilot.tools.artefacts import png_name
from tests.factories import chest_like, png_bytes
from tests.integration.test_backends import Cluster, close, postgres  # noqa: F401 (fixture)

pytestmark = pytest.mark.integration

TURNS = 24
QUESTIONS = [
    "Is there a pleural effusion?",
    "Where is it?",
    "How big is the heart?",
    "What do you see?",
    "Why did you say that?",
    "Is there a pneumothorax?",
]


@pytest.fixture(params=["sqlite", "postgres"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    if request.param == "sqlite":
        yield Settings(state_dir=tmp_path / "state")
        return
    cluster: Cluster = request.getfixturevalue("postgres")
    yield Settings(state_dir=tmp_path / "state", checkpoint_url=cluster.url())


def checkpoints_of(agent: Agent, session: str) -> int:
    return len(list(agent.graph.checkpointer.list({"configurable": {"thread_id": session}})))


def checkpoint_bytes(settings: Settings, session: str) -> int:
    """The session's bytes in LangGraph's tables (what every turn reads and writes)."""
    if not settings.checkpoint_url:
        with sqlite3.connect(settings.state_dir / "sessions.sqlite") as connection:
            return int(connection.execute(
                "SELECT (SELECT COALESCE(SUM(LENGTH(checkpoint) + LENGTH(metadata)), 0)"
                " FROM checkpoints WHERE thread_id = ?) + (SELECT COALESCE(SUM(LENGTH(value)),"
                " 0) FROM writes WHERE thread_id = ?)", (session, session),
            ).fetchone()[0])  # fmt: skip
    import psycopg

    with psycopg.connect(settings.checkpoint_url) as connection:
        row = connection.execute(
            "SELECT (SELECT COALESCE(SUM(pg_column_size(checkpoint)), 0) FROM checkpoints"
            " WHERE thread_id = %s) + (SELECT COALESCE(SUM(octet_length(blob)), 0) FROM"
            " checkpoint_blobs WHERE thread_id = %s) + (SELECT COALESCE(SUM(octet_length(blob)),"
            " 0) FROM checkpoint_writes WHERE thread_id = %s)", (session, session, session),
        ).fetchone()  # fmt: skip
    assert row is not None
    return int(row[0])


def test_a_long_session_keeps_a_bounded_state_and_loses_nothing(settings: Settings) -> None:
    agent = build_agent(settings)
    session = agent.new_session()
    agent.add_study(session, png_bytes(chest_like()), "cxr.png")
    answers, sizes = [], []
    for turn in range(TURNS):
        answers.append(agent.ask(session, QUESTIONS[turn % len(QUESTIONS)]))
        if turn + 1 in (TURNS // 2, TURNS):
            sizes.append(checkpoint_bytes(settings, session))
    # Twice the turns, not twice the state: what a turn reads and writes stays bounded.
    assert sizes[1] < 1.3 * sizes[0], sizes
    state = agent.state(session)
    assert len(state.messages) == RECENT_MESSAGES
    assert state.message_count == 2 * TURNS
    assert checkpoints_of(agent, session) == 1

    restarted = build_agent(settings)  # another process on the same store
    record = restarted.session(session)
    assert [m.role for m in record.messages] == ["user", "assistant"] * TURNS
    assert [m.answer for m in record.messages[1::2]] == answers
    assert [m.text for m in record.messages[::2]] == [
        QUESTIONS[turn % len(QUESTIONS)] for turn in range(TURNS)
    ]
    ids = [e.id for e in record.evidence]
    assert ids == [f"E{n}" for n in range(1, state.evidence_count + 1)]
    cited = {i for answer in answers for claim in answer.claims for i in claim.evidence}
    assert cited <= set(ids)  # every claim ever made still finds its evidence
    assert restarted.ask(session, "Is there a pleural effusion?").claims

    artefacts = [restarted.tools.artefacts.root / png_name(a) for a in record.artefact_ids()]
    assert artefacts and all(path.exists() for path in artefacts)
    restarted.delete_session(session)
    with pytest.raises(SessionNotFoundError):
        agent.session(session)
    assert restarted.history.read_all(session).messages == []
    assert not any(path.exists() for path in artefacts)
    if not settings.checkpoint_url:
        with sqlite3.connect(settings.state_dir / "sessions.sqlite") as connection:
            left = connection.execute(
                "SELECT COUNT(*) FROM radpilot_session_messages WHERE session_id = ?", (session,)
            ).fetchone()[0]
        assert left == 0
    else:
        close(agent)
        close(restarted)
