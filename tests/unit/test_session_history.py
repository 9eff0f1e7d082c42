"""The session history (append-only, numbered rows), checkpoint pruning and the working ledger
that keeps a turn's state bounded."""

from __future__ import annotations

from pathlib import Path

from radpilot.agent.history import SessionRecord, evidence_number, open_history
from radpilot.agent.memory import keep_latest_checkpoint, open_sqlite
from radpilot.agent.state import RECENT_EVIDENCE, AgentState, working_ledger
from radpilot.agent.types import Answer, Claim, DialogueFocus, FocusFinding, Message
from radpilot.core.contracts import Evidence


def evidence(number: int) -> Evidence:
    return Evidence(id=f"E{number}", kind="model_output", tool="t", values={"n": number})


def exchange(number: int) -> list[Message]:
    answer = Answer(claims=[Claim(text=f"a{number}", evidence=[f"E{number}"], certainty="likely")])
    return [Message(role="user", text=f"q{number}"),
            Message(role="assistant", text=f"a{number}", answer=answer)]  # fmt: skip


def test_rows_are_read_back_in_order_and_only_up_to_the_checkpointed_counters(
    tmp_path: Path,
) -> None:
    history = open_history(open_sqlite(tmp_path))
    for turn in range(3):
        history.write("se_a", list(enumerate(exchange(turn), start=2 * turn)), [evidence(turn + 1)])
    history.write("se_b", list(enumerate(exchange(9))), [evidence(1)])
    record = history.read("se_a", messages=4, evidence=2)  # the third turn was cut off
    assert [m.text for m in record.messages] == ["q0", "a0", "q1", "a1"]
    assert [e.id for e in record.evidence] == ["E1", "E2"]
    assert record.messages[1].answer is not None
    assert len(history.read_all("se_a").messages) == 6  # deletion sees the cut-off turn too


def test_a_retried_turn_overwrites_the_cut_off_one_and_deletion_is_per_session(
    tmp_path: Path,
) -> None:
    history = open_history(open_sqlite(tmp_path))
    history.write("se_a", list(enumerate(exchange(1))), [evidence(1)])
    history.write("se_a", list(enumerate(exchange(2))), [evidence(1).model_copy(
        update={"values": {"n": 2}})])  # fmt: skip
    record = history.read("se_a", messages=2, evidence=1)
    assert [m.text for m in record.messages] == ["q2", "a2"]
    assert record.evidence[0].values == {"n": 2}
    history.write("se_b", list(enumerate(exchange(3))), [])
    history.delete("se_a")
    assert history.read_all("se_a") == SessionRecord(messages=[], evidence=[])
    assert len(history.read_all("se_b").messages) == 2


def test_the_history_survives_reopening_the_database(tmp_path: Path) -> None:
    open_history(open_sqlite(tmp_path)).write("se_a", list(enumerate(exchange(1))), [])
    assert len(open_history(open_sqlite(tmp_path)).read("se_a", messages=2, evidence=0).messages)


def test_only_the_latest_checkpoint_of_a_thread_is_kept(tmp_path: Path) -> None:
    from langgraph.checkpoint.base import empty_checkpoint

    saver = open_sqlite(tmp_path)
    configs = []
    for thread in ("se_a", "se_b"):
        config = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
        for step in range(3):
            checkpoint = empty_checkpoint()
            config = saver.put(config, checkpoint, {"step": step}, {})
            saver.put_writes(config, [("messages", step)], task_id=f"t{step}")
        configs.append(config)
    keep_latest_checkpoint(saver, "se_a")
    assert len(list(saver.list({"configurable": {"thread_id": "se_a"}}))) == 1
    assert len(list(saver.list({"configurable": {"thread_id": "se_b"}}))) == 3
    latest = saver.get_tuple({"configurable": {"thread_id": "se_a", "checkpoint_ns": ""}})
    assert latest is not None
    assert latest.config["configurable"]["checkpoint_id"] == configs[0]["configurable"][
        "checkpoint_id"]  # fmt: skip
    assert latest.pending_writes  # the kept checkpoint's writes stay
    rows = saver.conn.execute("SELECT COUNT(*) FROM writes WHERE thread_id = 'se_a'").fetchone()
    assert rows[0] == 1


def test_the_working_ledger_keeps_what_the_focus_recent_answers_and_turn_cite() -> None:
    ledger = [evidence(n) for n in range(1, 61)]
    focus = DialogueFocus(findings=[FocusFinding(name="Effusion", evidence=["E2"])])
    recent = exchange(5)
    kept = {e.id for e in working_ledger(ledger, focus, recent, turn=["E7"])}
    latest = {f"E{n}" for n in range(61 - RECENT_EVIDENCE, 61)}
    assert kept == {"E2", "E5", "E7"} | latest


def test_counters_cover_sessions_checkpointed_before_they_existed() -> None:
    state = AgentState(messages=exchange(1) + exchange(2), evidence=[evidence(1)])
    assert (state.message_count, state.evidence_count) == (4, 1)
    assert AgentState(message_count=40, messages=exchange(1)).message_count == 40


def test_evidence_numbers() -> None:
    assert evidence_number("E12") == 12
