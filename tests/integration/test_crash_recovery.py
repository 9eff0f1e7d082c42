"""SIGKILL the server in the middle of turns under load, restart it on the same state dir, and
check that nothing a client was told is lost and nothing half-written is left behind.

Two crash cycles on one state dir:
1. killed while a tool runs inside a turn (a streamed `tool_start` was just seen);
2. killed the instant a streamed turn delivers its `final` event: a client holding an answer
   must find it again (radpilot sends `final` only once the turn is checkpointed).
Meanwhile another client keeps creating sessions and uploading images, so the kill also lands
near study writes. After each kill (server down) the study store and the SQLite files are
inspected; after each restart every session is read back and asked a new question.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import cycle
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from radpilot.app.client import ApiClientError, Client
from tests.server import ServerProcess, server_process

pytestmark = pytest.mark.integration

SESSIONS = 3
# Long enough that every session's early turns live only in the session history, no longer in
# the checkpointed state (which keeps the last few messages): the kill must lose neither.
SETUP_QUESTIONS = ["Is there a pleural effusion?", "Why did you say that?"] * 5
# Questions that run a new tool the first time a session asks them (then reuse its evidence),
# so the kill finds real work in flight, not only cached turns.
LOAD_QUESTIONS = [
    "Where is the nodule?",
    "How big is the heart?",
    "Where is the consolidation?",
    "Where is the mass?",
    "Where is the infiltrate?",
    "Where is the atelectasis?",
    "What do you see?",
]
UPLOAD_PAUSE_S = 0.3
# What a client sees when the server dies under it.
CONNECTION_LOST = (httpx.TransportError,)
History = list[dict[str, Any]]  # a session's messages as JSON


def dump(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


@dataclass
class Turn:
    session_id: str
    question: str
    answer: dict[str, Any] | None = None  # set once the client holds the whole answer


@dataclass
class Load:
    """What the clients did while the server was up: finished, delivered and cut-off turns."""

    completed: list[Turn] = field(default_factory=list)  # the response arrived in full
    final_seen: list[Turn] = field(default_factory=list)  # `final` arrived, then the kill
    interrupted: list[Turn] = field(default_factory=list)  # cut off before `final`
    uploads: list[tuple[str, str]] = field(default_factory=list)  # (session, study) acked
    errors: list[str] = field(default_factory=list)  # any HTTP error before the kill
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, bucket: list[Any], item: Any) -> None:
        with self.lock:
            bucket.append(item)


@dataclass
class Tally:
    sessions: set[str] = field(default_factory=set)
    verified: set[str] = field(default_factory=set)  # trace ids of turns found intact
    cut_off: set[tuple[str, str]] = field(default_factory=set)  # (session, question) killed
    turns_lost: int = 0
    interrupted_complete: int = 0
    interrupted_absent: int = 0
    interrupted_unanswered: int = 0  # the question kept, no answer: the turn was cut off
    uploads_checked: int = 0
    study_records: set[str] = field(default_factory=set)  # checked: complete pixels
    orphan_pixel_files: set[str] = field(default_factory=set)
    temp_files_left: set[str] = field(default_factory=set)
    kills: int = 0

    @property
    def turns_checked(self) -> int:
        return len(self.verified)


def ask_until_killed(
    url: str, session_id: str, questions: list[str], streaming: bool, load: Load,
    on_event: Callable[[str], None], stop: threading.Event,
) -> None:  # fmt: skip
    """Ask question after question until the server dies; record every turn's fate."""
    with Client(url, timeout=120) as rp:
        for question in cycle(questions):
            if stop.is_set():
                return
            turn = Turn(session_id, question)
            try:
                if streaming:
                    final = None
                    for event in rp.stream(session_id, question):
                        if event.kind == "final":
                            final = event.data
                            turn.answer = final
                        on_event(event.kind)
                    if final is None:
                        load.add(load.errors, f"stream without final: {question!r}")
                        return
                else:
                    turn.answer = rp.ask(session_id, question).model_dump(mode="json")
                load.add(load.completed, turn)
            except CONNECTION_LOST:
                load.add(load.final_seen if turn.answer else load.interrupted, turn)
                return
            except ApiClientError as error:
                load.add(load.errors, f"{question!r}: {error}")
                return


def upload_until_killed(url: str, images: list[Path], load: Load, stop: threading.Event) -> None:
    """Create sessions and upload studies until the server dies, keeping study writes busy."""
    with Client(url, timeout=120) as rp:
        for image in cycle(images):
            # Paced: enough writes to land near the kill, not so many that they starve turns.
            if stop.wait(UPLOAD_PAUSE_S):
                return
            try:
                session_id = rp.create_session()
                study = rp.upload_study(session_id, image)
                load.add(load.uploads, (session_id, study.study_id))
            except CONNECTION_LOST:
                return
            except ApiClientError as error:
                load.add(load.errors, f"upload: {error}")
                return


def run_load_and_kill(
    server: ServerProcess, sessions: list[str], images: list[Path], kill_on: str, load: Load
) -> None:
    """One asker per session (half of them streaming) and one uploader; SIGKILL on the first
    `kill_on` event seen after a few turns of load have completed."""
    trigger, stop = threading.Event(), threading.Event()
    warmed = len(load.completed) + 3

    def on_event(kind: str) -> None:
        if kind == kill_on and len(load.completed) >= warmed:
            trigger.set()

    threads = [
        threading.Thread(
            target=ask_until_killed,
            args=(
                server.url,
                session_id,
                LOAD_QUESTIONS[index:] + LOAD_QUESTIONS[:index],
                index % 2 == 0,
                load,
                on_event,
                stop,
            ),
        )
        for index, session_id in enumerate(sessions)
    ]
    threads.append(
        threading.Thread(target=upload_until_killed, args=(server.url, images, load, stop))
    )
    for thread in threads:
        thread.start()
    fired = trigger.wait(timeout=90)
    os.kill(server.process.pid, signal.SIGKILL)
    server.process.wait(timeout=30)
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
    assert fired, f"no {kill_on!r} event under load within 90 s; errors: {load.errors}"
    assert not load.errors, load.errors


def check_study_store(state: Path, tally: Tally) -> None:
    """With the server dead: every study record has its complete pixels, and nothing the store
    would read is partial. Temporary files of interrupted writes may remain: the store never
    opens them (it reads only `study.json` and the `pixels.npy` a record names)."""
    from radpilot.tools.studies import StudyStore

    store = StudyStore(state / "studies", secret=b"\0" * 32)
    for folder in sorted((state / "studies").iterdir()):
        names = {path.name for path in folder.iterdir()}
        temporary = {name for name in names if name.startswith(".tmp-")}
        assert names - temporary <= {"study.json", "pixels.npy"}, names
        tally.temp_files_left.update(f"{folder.name}/{name}" for name in temporary)
        if "study.json" not in names:
            if "pixels.npy" in names:  # killed between the two writes: never a study
                tally.orphan_pixel_files.add(folder.name)
            continue
        study = store.get(folder.name)
        assert store.pixels(folder.name).shape == (study.height, study.width)
        tally.study_records.add(folder.name)


def check_sqlite(state: Path) -> None:
    for name in ("sessions.sqlite", "app.sqlite"):
        with contextlib.closing(sqlite3.connect(state / name)) as db:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",), name


def check_conversation(
    messages: History, before: History, load: Load, session_id: str,
    tally: Tally,
) -> None:  # fmt: skip
    """Every turn a client finished is stored as it was delivered; cut-off turns are complete
    or absent: a question and its answer are written together, never one without the other."""
    assert [dump(m) for m in messages[: len(before)]] == [dump(m) for m in before], (
        f"{session_id}: history from before the kill changed"
    )
    tally.verified.update(m["answer"]["trace_id"] for m in before if m["role"] == "assistant")
    stored = {dump(m["answer"]) for m in messages if m["role"] == "assistant"}
    for turn in [*load.completed, *load.final_seen]:
        if turn.session_id == session_id:
            assert turn.answer is not None
            if dump(turn.answer) in stored:
                tally.verified.add(turn.answer["trace_id"])
            else:
                tally.turns_lost += 1
    cut_off = [*load.interrupted, *load.final_seen]  # the server had not finished these
    tally.cut_off.update((t.session_id, t.question) for t in cut_off)
    for index, message in enumerate(messages):
        if message["role"] == "assistant":
            # An answer is written whole, with the question it answers right before it.
            assert message["answer"] is not None and message["text"] is not None, message
            assert messages[index - 1]["role"] == "user", f"{session_id}: answer with no question"
        elif index + 1 == len(messages) or messages[index + 1]["role"] == "user":
            raise AssertionError(f"{session_id}: question {message['text']!r} without its answer")
    for turn in load.interrupted:
        if turn.session_id != session_id:
            continue
        if messages and messages[-1]["role"] == "user" and messages[-1]["text"] == turn.question:
            tally.interrupted_unanswered += 1
        elif len(messages) >= 2 and messages[-2]["text"] == turn.question:
            tally.interrupted_complete += 1  # committed; only the reply was cut off
        else:
            tally.interrupted_absent += 1


def verify_after_restart(
    server: ServerProcess, state: Path, sessions: list[str], before: dict[str, History],
    load: Load, tally: Tally,
) -> dict[str, History]:  # fmt: skip
    """Read every session back, check it, ask each a new question; return the new histories."""
    after: dict[str, History] = {}
    with Client(server.url, timeout=120) as rp:
        for session_id in sessions:
            messages = rp.session(session_id).model_dump(mode="json")["messages"]
            check_conversation(messages, before[session_id], load, session_id, tally)
        for session_id, study_id in load.uploads:
            studies = [s.study_id for s in rp.session(session_id).studies]
            assert study_id in studies, f"acknowledged upload {study_id} missing"
            tally.uploads_checked += 1
            tally.sessions.add(session_id)
        for session_id in {*sessions, *(session for session, _ in load.uploads)}:
            for study in rp.session(session_id).studies:  # a session names only whole studies
                assert (state / "studies" / study.study_id / "study.json").is_file()
        for session_id in sessions:
            # A lone question left by the kill must not break the session: it still answers.
            answer = rp.ask(session_id, "Is there a pneumothorax?")
            assert answer.claims and answer.trace_id
            messages = rp.session(session_id).model_dump(mode="json")["messages"]
            assert [m["role"] for m in messages[-2:]] == ["user", "assistant"]
            assert dump(messages[-1]["answer"]) == dump(answer.model_dump(mode="json"))
            after[session_id] = messages
    return after


@pytest.fixture
def server_log(tmp_path: Path) -> Iterator[IO[str]]:
    """All three servers' output, in one file: read it when a check fails."""
    with (tmp_path / "server.log").open("w") as log:
        yield log


def test_sigkill_mid_turn_loses_no_completed_turn(
    data_dir: Path, tmp_path: Path, server_log: IO[str]
) -> None:
    images = sorted((data_dir / "nih" / "images").glob("*.png"))[:8]
    state, tally, log = tmp_path / "state", Tally(), server_log
    before: dict[str, History] = {}
    started = time.monotonic()
    with server_process(state, output=log) as server, Client(server.url, timeout=120) as rp:
        sessions = [rp.create_session() for _ in range(SESSIONS)]
        for session_id, image in zip(sessions, images, strict=False):
            rp.upload_study(session_id, image)
            for question in SETUP_QUESTIONS:
                rp.ask(session_id, question)
            before[session_id] = rp.session(session_id).model_dump(mode="json")["messages"]
        tally.sessions.update(sessions)
        first = Load()
        run_load_and_kill(server, sessions, images, "tool_start", first)
        tally.kills += 1
    check_study_store(state, tally)
    check_sqlite(state)

    with server_process(state, output=log) as server:
        before = verify_after_restart(server, state, sessions, before, first, tally)
        second = Load()
        run_load_and_kill(server, sessions, images, "final", second)
        tally.kills += 1
    check_study_store(state, tally)
    check_sqlite(state)

    with server_process(state, output=log) as server:
        verify_after_restart(server, state, sessions, before, second, tally)

    interrupted = len(first.interrupted) + len(second.interrupted)
    delivered_at_kill = len(first.final_seen) + len(second.final_seen)
    print(
        f"\ncrash recovery: {tally.kills} kills, {len(tally.sessions)} sessions, "
        f"{tally.turns_checked} completed turns checked ({delivered_at_kill} delivered "
        f"as `final` right before the kill), {tally.turns_lost} lost; {interrupted} cut-off "
        f"turns: {tally.interrupted_complete} complete, {tally.interrupted_absent} absent, "
        f"{tally.interrupted_unanswered} a lone question; {tally.uploads_checked} acknowledged "
        f"uploads checked, {len(tally.study_records)} study records with complete pixels, "
        f"{len(tally.orphan_pixel_files)} orphan pixel files, "
        f"{len(tally.temp_files_left)} temp files; {time.monotonic() - started:.0f} s"
    )
    assert tally.turns_lost == 0
    assert tally.turns_checked >= SESSIONS * (len(SETUP_QUESTIONS) + 1) + 3


def test_final_is_streamed_only_once_the_turn_is_checkpointed(
    data_dir: Path, tmp_path: Path
) -> None:
    """The deterministic form of the second kill above: when a client holds `final`, the
    answer is already committed, so no crash from then on can take it back."""
    from radpilot.assembly import build_agent
    from radpilot.settings import Settings

    agent = build_agent(Settings(state_dir=tmp_path / "state"))
    session_id = agent.new_session()
    image = data_dir / "nih" / "images" / "00000211_010.png"
    agent.add_study(session_id, image.read_bytes(), image.name)
    finals = 0
    for event in agent.stream(session_id, "Is there a pleural effusion?"):
        if event.kind == "final":
            finals += 1
            stored = agent.state(session_id).messages[-1]
            assert stored.answer is not None, "final streamed before its answer was stored"
            assert stored.answer.trace_id == event.data["trace_id"]
    assert finals == 1
