"""Scale-out state backends against real servers on loopback: conversation state in PostgreSQL
(`RADPILOT_CHECKPOINT_URL`) and the vector store on a Chroma server (`RADPILOT_CHROMA_URL`).

PostgreSQL: a throwaway cluster (initdb) in a temporary folder, on a free loopback port with its
unix socket in that folder. initdb and postgres refuse to run as root, so as root (CI) they run
as the `postgres` user that Debian's package creates, or as `nobody`.
Chroma: `chroma run` from the installed chromadb package, on a free loopback port.
Each is skipped with the reason when its binaries are missing.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from radpilot.agent.service import Agent, SessionNotFoundError
from radpilot.agent.types import Message
from radpilot.assembly import build_agent, build_registry
from radpilot.core.errors import RadpilotError
from radpilot.knowledge.index import COLLECTION, GuidelineIndex
from radpilot.knowledge.notes import Note, packaged_notes
from radpilot.settings import Settings
from radpilot.tools.base import ToolContext
from tests.factories import chest_like, png_bytes
from tests.server import ProcessExitedError, free_port, stop, wait_until_answers

pytestmark = pytest.mark.integration

DATABASE = "radpilot"
SUPERUSER = "radpilot"


# PostgreSQL: a throwaway cluster.


def postgres_bin_dir() -> Path | None:
    """The folder holding initdb and pg_ctl: PATH first, then Debian's versioned folders."""
    found = shutil.which("initdb")
    candidates = [Path(found).resolve().parent] if found else []
    debian = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version, reverse=True)
    candidates += [Path(folder) for folder in debian]
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    return None


def _version(folder: str) -> float:
    try:
        return float(Path(folder).parent.name)
    except ValueError:
        return 0.0


@dataclass
class Runner:
    """Runs the PostgreSQL binaries as an unprivileged user when this process is root."""

    user: pwd.struct_passwd | None

    @classmethod
    def for_this_process(cls) -> Runner:
        if os.geteuid() != 0:
            return cls(user=None)
        for name in ("postgres", "nobody"):  # Debian's package creates `postgres`
            try:
                return cls(user=pwd.getpwnam(name))
            except KeyError:
                continue
        pytest.skip("running as root and neither a `postgres` nor a `nobody` user exists")

    def own(self, path: Path) -> None:
        if self.user is not None:
            os.chown(path, self.user.pw_uid, self.user.pw_gid)

    def run(self, command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
        drop: dict[str, Any] = {}
        if self.user is not None:
            drop = {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "HOME": str(cwd)}
        return subprocess.run(
            command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, **drop
        )


def traversable_tmp(runner: Runner) -> str | None:
    """A temp root the unprivileged user can reach (pytest's own tmp dirs are 0700 root)."""
    if runner.user is None:
        return None
    base = Path(tempfile.gettempdir()).resolve()
    reachable = all(p.stat().st_mode & stat.S_IXOTH for p in [base, *base.parents])
    return str(base) if reachable else "/tmp"


@dataclass
class Cluster:
    bin_dir: Path
    root: Path
    runner: Runner
    port: int = 0

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, database: str = DATABASE) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def pg(self, tool: str, *args: str) -> None:
        done = self.runner.run([str(self.bin_dir / tool), *args], cwd=self.root)
        if done.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stderr}\n{tail}")

    def create(self) -> None:
        sockets = self.root / "sockets"
        sockets.mkdir()
        self.runner.own(sockets)
        # --no-sync and fsync=off: a throwaway cluster need not survive a power cut, and the
        # shared two-core machine should not wait on disk flushes.
        self.pg("initdb", "-D", str(self.data), "-U", SUPERUSER, "--auth=trust",
                "--no-locale", "-E", "UTF8", "--no-sync")  # fmt: skip
        self.port = free_port()

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root / 'sockets'} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c full_page_writes=off"
        )
        self.pg("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"),
                "-o", options, "-w", "-t", "60", "start")  # fmt: skip

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self.pg("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")


@pytest.fixture(scope="module")
def postgres() -> Iterator[Cluster]:
    """A running PostgreSQL with an empty `radpilot` database; stopped and deleted after."""
    psycopg = pytest.importorskip("psycopg", reason="pip install 'radpilot[postgres]'")
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        pytest.skip(
            "PostgreSQL binaries not found (initdb, pg_ctl on PATH or in "
            "/usr/lib/postgresql/*/bin): apt-get install postgresql"
        )
    runner = Runner.for_this_process()
    root = Path(tempfile.mkdtemp(prefix="radpilot-pg-", dir=traversable_tmp(runner)))
    runner.own(root)
    cluster = Cluster(bin_dir=bin_dir, root=root, runner=runner)
    try:
        cluster.create()
        cluster.start()
        with psycopg.connect(cluster.url("postgres"), autocommit=True) as connection:
            connection.execute(f"CREATE DATABASE {DATABASE}")
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


class Foreign(BaseModel):
    """A type outside the checkpointer's allow-list."""

    value: int = 1


def close(agent: Agent) -> None:
    """Give the checkpointer's pooled connections back (the fixture stops the server next)."""
    agent.graph.checkpointer.conn.close()


def test_sessions_live_in_postgres_and_are_shared_by_a_second_replica(
    postgres: Cluster, tmp_path: Path
) -> None:
    import psycopg

    postgres_url = postgres.url()
    # Both replicas see the same state dir (studies, de-identification key) as they would on
    # a shared volume; the sessions themselves must come from PostgreSQL.
    settings = Settings(state_dir=tmp_path / "state", checkpoint_url=postgres_url)
    first = build_agent(settings)
    session = first.new_session()
    study = first.add_study(session, png_bytes(chest_like()), "cxr.png")
    answer = first.ask(session, "Is there a pleural effusion?")
    assert answer.claims and all(claim.evidence for claim in answer.claims)
    before = first.state(session)

    replica = build_agent(settings)  # another API process on the same database, or a restart
    after = replica.state(session)
    assert after.messages == before.messages and [m.role for m in after.messages] == [
        "user",
        "assistant",
    ]
    assert [s.study_id for s in after.studies] == [study.study_id]
    assert after.evidence == before.evidence and after.evidence
    assert not (settings.state_dir / "sessions.sqlite").exists()
    # Read back as radpilot's own types, and only those: the msgpack allow-list applies here
    # as it does to SQLite.
    saver = replica.graph.checkpointer
    saved = saver.get_tuple({"configurable": {"thread_id": session}})
    assert isinstance(saved.checkpoint["channel_values"]["messages"][0], Message)
    assert not isinstance(saver.serde.loads_typed(saver.serde.dumps_typed(Foreign())), Foreign)
    with psycopg.connect(postgres_url) as connection:
        stored = connection.execute(
            "SELECT count(*) FROM checkpoints WHERE thread_id = %s", (session,)
        ).fetchone()
    assert stored is not None and stored[0] > 0

    follow_up = replica.ask(session, "Why did you say that?")
    assert follow_up.claims and all(claim.evidence for claim in follow_up.claims)
    assert len(first.state(session).messages) == 4  # the first replica sees the new turn

    replica.delete_session(session)
    with pytest.raises(SessionNotFoundError):
        first.state(session)
    close(first)
    close(replica)


def test_a_database_restart_costs_no_turn(postgres: Cluster, tmp_path: Path) -> None:
    """The pool replaces connections that a restart (or failover) broke, on checkout."""
    agent = build_agent(Settings(state_dir=tmp_path / "state", checkpoint_url=postgres.url()))
    session = agent.new_session()
    agent.add_study(session, png_bytes(chest_like(seed=1)), "cxr.png")
    postgres.stop()
    postgres.start()
    answer = agent.ask(session, "Is there a pleural effusion?")
    assert answer.claims and [m.role for m in agent.state(session).messages] == [
        "user",
        "assistant",
    ]
    close(agent)


def test_an_unreachable_database_is_a_clear_error(tmp_path: Path) -> None:
    pytest.importorskip("psycopg", reason="pip install 'radpilot[postgres]'")
    url = f"postgresql://radpilot:s3cret-pw@127.0.0.1:{free_port()}/radpilot"
    started = time.monotonic()
    with pytest.raises(RadpilotError) as raised:
        build_agent(Settings(state_dir=tmp_path, checkpoint_url=url))
    message = str(raised.value)
    assert message.startswith("cannot reach the checkpoint database at postgresql://")
    assert "RADPILOT_CHECKPOINT_URL" in message
    assert "127.0.0.1" in message and "s3cret-pw" not in message
    assert time.monotonic() - started < 60


# Session ownership in PostgreSQL: API replicas on several hosts agree on who owns what.


def test_ownership_is_shared_through_postgres(postgres: Cluster, tmp_path: Path) -> None:
    from radpilot.app.ownership import PostgresOwnership, SqliteOwnership, open_ownership

    assert isinstance(open_ownership(Settings(state_dir=tmp_path)), SqliteOwnership)
    settings = Settings(state_dir=tmp_path / "state", checkpoint_url=postgres.url())
    one, other = open_ownership(settings), open_ownership(settings)  # two API processes
    assert isinstance(one, PostgresOwnership) and isinstance(other, PostgresOwnership)
    one.add_session("se_shared", "alice")
    assert other.owns_session("alice", "se_shared")
    assert not other.owns_session("bob", "se_shared")  # a foreign key is refused
    assert not other.owns_session("alice", "se_unknown")
    one.add_artefacts("se_shared", ["ar_1", "ar_2"])
    other.add_artefacts("se_shared", ["ar_2"])  # recorded twice: kept once
    assert [other.session_of_artefact(a) for a in ("ar_1", "ar_2", "ar_x")] == [
        "se_shared", "se_shared", None,
    ]  # fmt: skip
    other.remove_session("se_shared")
    assert not one.owns_session("alice", "se_shared")
    assert one.session_of_artefact("ar_1") is None
    assert not (settings.state_dir / "app.sqlite").exists()
    one.close()
    other.close()


def test_two_api_replicas_on_one_database_share_sessions_and_artefacts(
    postgres: Cluster, tmp_path: Path
) -> None:
    """Two API apps with their own state dirs (as on two hosts) and their owner tables in
    PostgreSQL: a session created through one is its owner's through the other, and only
    its owner's. Both apps share one agent, as replicas share the sessions and the volume."""
    from fastapi.testclient import TestClient

    from radpilot.app.api import create_app
    from radpilot.app.keys import KeyStore

    url = postgres.url()
    agent = build_agent(Settings(state_dir=tmp_path / "volume", checkpoint_url=url))
    hosts = [tmp_path / "host-a", tmp_path / "host-b"]
    keys = KeyStore(hosts[0])
    tokens = {name: {"Authorization": f"Bearer {keys.create(name)}"} for name in ("alice", "bob")}
    (hosts[1] / "keys").mkdir(parents=True)
    shutil.copy(keys.path, hosts[1] / "keys")  # API keys: the same on every replica
    api_a, api_b = (
        TestClient(create_app(Settings(state_dir=host, checkpoint_url=url), agent=agent, ui=False))
        for host in hosts
    )
    alice, bob = tokens["alice"], tokens["bob"]

    session = api_a.post("/v1/sessions", headers=alice).json()["session_id"]
    upload = {"file": ("cxr.png", png_bytes(chest_like(seed=2)), "image/png")}
    assert api_a.post(f"/v1/sessions/{session}/studies", headers=alice, files=upload).is_success
    question = {"text": "Where is the cardiomegaly?"}  # localization draws an overlay
    answer = api_a.post(f"/v1/sessions/{session}/messages", headers=alice, json=question).json()
    artefact = next(x["id"] for e in answer["evidence"] for x in e["artefacts"])

    assert api_b.get(f"/v1/sessions/{session}", headers=alice).json()["session_id"] == session
    assert api_b.get(f"/v1/artefacts/{artefact}", headers=alice).content[:4] == b"\x89PNG"
    for foreign in (f"/v1/sessions/{session}", f"/v1/artefacts/{artefact}"):
        assert api_b.get(foreign, headers=bob).status_code == 404  # not bob's: as if unknown
    assert api_b.delete(f"/v1/sessions/{session}", headers=bob).status_code == 404
    assert api_b.delete(f"/v1/sessions/{session}", headers=alice).status_code == 204
    assert api_a.get(f"/v1/sessions/{session}", headers=alice).status_code == 404
    assert api_a.get(f"/v1/artefacts/{artefact}", headers=alice).status_code == 404
    assert not any((host / "app.sqlite").exists() for host in hosts)
    close(agent)


# Chroma: a `chroma run` server.


def chroma_cli() -> Path | None:
    beside = Path(sys.executable).parent / "chroma"  # the venv's own, when not on PATH
    if beside.is_file():
        return beside
    found = shutil.which("chroma")
    return Path(found) if found else None


def tail(log: Path, chars: int) -> str:
    return log.read_text(errors="replace")[-chars:]


def wait_for_heartbeat(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    try:
        wait_until_answers(f"{url}/api/v2/heartbeat", process, timeout=60, what="`chroma run`",
                           output=lambda: tail(log, 2000))  # fmt: skip
    except ProcessExitedError as error:  # a Chroma that cannot start here is a skip, not a bug
        pytest.skip(str(error))


@pytest.fixture(scope="module")
def chroma_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    cli = chroma_cli()
    if cli is None:
        pytest.skip("the `chroma` CLI (from the chromadb package) is not installed")
    root = tmp_path_factory.mktemp("chroma-server")
    port = free_port()
    log = root / "server.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [str(cli), "run", "--host", "127.0.0.1", "--port", str(port),
             "--path", str(root / "data")],
            stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_heartbeat(url, process, log)
        yield url
    finally:
        stop(process)


QUERIES = {
    "where should the tip of a breathing tube sit?": "tube-",
    "collapsed lung on a supine film": "ptx-",
    "when is CT needed for a nodule on a chest film": "nod-",
}


def some_notes() -> list[Note]:
    """The notes the queries are about (27 of 92): embedding all of them twice would take
    over a minute on two cores, and ranking among these is what the comparison needs."""
    return [n for n in packaged_notes() if n.id.startswith(tuple(QUERIES.values()))]


def test_guideline_search_through_a_chroma_server_matches_the_embedded_store(
    chroma_url: str, tmp_path: Path
) -> None:
    import chromadb

    weights = Settings().weights_dir
    served = GuidelineIndex(tmp_path / "server", weights, some_notes(), chroma_url=chroma_url)
    embedded = GuidelineIndex(tmp_path / "embedded", weights, some_notes())
    assert len(served.build().added) == len(served.notes)
    for query, prefix in QUERIES.items():
        remote, local = served.search(query, k=3), embedded.search(query, k=3)
        assert remote.passages[0].note_id == local.passages[0].note_id, query
        assert remote.passages[0].note_id.startswith(prefix), query
        assert remote.passages[0].similarity == pytest.approx(
            local.passages[0].similarity, abs=1e-3
        )

    # The server holds the vectors, embedded here by radpilot's MiniLM (the server never
    # embeds): the served index left nothing on disk, and a second client (another replica)
    # finds every note there and re-embeds none.
    assert not (tmp_path / "server" / "knowledge" / "chroma").exists()
    host, port = chroma_url.removeprefix("http://").split(":")
    raw = chromadb.HttpClient(
        host=host, port=int(port), settings=chromadb.Settings(anonymized_telemetry=False)
    ).get_collection(COLLECTION)
    assert raw.count() == len(served.notes)
    assert raw.configuration_json["embedding_function"]["name"] == "radpilot-all-minilm-l6-v2"
    replica = GuidelineIndex(tmp_path / "replica", weights, some_notes(), chroma_url=chroma_url)
    report = replica.build()
    assert report.added == report.updated == [] and report.unchanged == len(served.notes)


def test_an_unreachable_chroma_server_is_a_clear_error(tmp_path: Path) -> None:
    from radpilot.knowledge.store import chroma_client

    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(RadpilotError, match="cannot reach the Chroma server.*RADPILOT_CHROMA_URL"):
        chroma_client(tmp_path, url)
    with pytest.raises(RadpilotError, match="must look like http://HOST:PORT"):
        chroma_client(tmp_path, "127.0.0.1:8000")
    # The guideline tool takes the server from the settings (the path a deployment takes).
    settings = Settings(state_dir=tmp_path, chroma_url=url)
    result = build_registry(Settings()).run(
        "search_guidelines", {"query": "pneumothorax"}, ToolContext.create(settings)
    )
    assert not result.ok and result.error is not None
    assert result.error.code == "vector_store_unavailable"
