"""Every case of the bad-input corpus (tests/corpus/bad_inputs) through every interface.

- CLI: the real entry point, `radpilot.app.cli.main`, in one child process per case. A bad
  input may exit non-zero only with one clear `radpilot: error:` line; never a traceback,
  never exit 1 (an internal error).
- REST API: a real `radpilot serve` with API keys. A bad input gets a 4xx with a JSON error
  body, never a 5xx or a traceback; afterwards the server is ready and a normal conversation
  works.
- UI: the Gradio callbacks (`preview` on upload, `send` on a question) called directly. A bad
  input shows a readable message (a `gr.Error` toast or a warning in the chat), never an
  exception or a traceback.

Each interface prints a one-line summary (run pytest with -s): cases tried, crashes, 5xx,
tracebacks and problems (any of those, a refusal without a clear message, identifying text in
a reply, or a wrong outcome: an expected refusal accepted, or a valid input refused).
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from radpilot.app.keys import KeyStore
from radpilot.knowledge.embedding import extracted_model_dir
from tests.corpus.bad_inputs.generate import (
    QUESTION,
    ApiRequest,
    Case,
    all_cases,
    case_path,
    write_corpus,
)
from tests.server import running_server

pytestmark = pytest.mark.integration

CASES = all_cases()
TRACEBACK = "Traceback (most recent call last)"
CLI_WORKERS = 2  # the machine this runs on has two cores


@dataclass
class Tally:
    """What one interface did with the corpus."""

    interface: str
    tried: int = 0
    not_applicable: int = 0
    crashes: int = 0
    server_errors: int = 0
    tracebacks: int = 0
    problems: list[str] = field(default_factory=list)

    def problem(self, case: Case, what: str) -> None:
        self.problems.append(f"{case.name}: {what}")

    def summary(self) -> str:
        server_errors = self.server_errors if self.interface == "REST API" else "n/a"
        return (
            f"bad inputs via {self.interface}: {self.tried} cases tried "
            f"({self.not_applicable} not applicable), {self.crashes} crashes, "
            f"{server_errors} 5xx, {self.tracebacks} tracebacks, {len(self.problems)} problems"
        )

    def report(self) -> None:
        print("\n" + self.summary())
        assert not self.problems, "\n".join([self.summary(), *self.problems])


def check_outcome(tally: Tally, case: Case, refused: bool, detail: str) -> None:
    """A refusal where the corpus expects one, an acceptance where it expects that."""
    if case.expect == "error" and not refused:
        tally.problem(case, f"accepted, but should be refused ({detail[:200]})")
    elif case.expect == "ok" and refused:
        tally.problem(case, f"refused, but should be accepted ({detail[:200]})")


def check_secrets(tally: Tally, case: Case, text: str) -> None:
    for secret in case.secrets:
        if secret in text:
            tally.problem(case, f"identifying text {secret!r} came back")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("bad-inputs")
    write_corpus(folder)
    return folder


@pytest.fixture(scope="module")
def good_image(data_dir: Path) -> Path:
    return sorted((data_dir / "nih" / "images").glob("*.png"))[0]


def test_the_corpus_is_generated_deterministically(tmp_path: Path) -> None:
    first = write_corpus(tmp_path / "a").read_text()
    assert write_corpus(tmp_path / "b").read_text() == first
    entries = json.loads(first)
    assert len(entries) >= 40
    assert {entry["category"] for entry in entries} == {"image", "dicom", "text", "api"}
    assert all((tmp_path / "a" / e["path"]).is_file() for e in entries if "path" in e)


# --- CLI ----------------------------------------------------------------------------------


def cli_arguments(case: Case, corpus: Path, image: Path) -> list[str] | None:
    """The command that feeds this case to the CLI, or None when the CLI cannot take it."""
    if case.is_file:
        return ["tools", "run", "image_info", "--image", str(case_path(corpus, case))]
    if case.category == "text":
        assert case.text is not None
        if "\x00" in case.text or any(0xD800 <= ord(ch) <= 0xDFFF for ch in case.text):
            return None  # a command line cannot carry NUL bytes or unpaired surrogates
        return ["ask", str(image), case.text]
    return list(case.cli) or None


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


# Runs `radpilot.app.cli.main` once per job, each in a forked child with its own stdout,
# stderr, exit code and state directory: the real entry point as `python -m radpilot.app.cli`
# runs it, without paying torch's and transformers' imports (~13 s of CPU) ~70 times over.
FORK_DRIVER = r"""
import importlib, json, os, pkgutil, sys, traceback
import radpilot.agent, radpilot.knowledge, radpilot.tools
# Only a head start (imports, no computation, so forking stays safe): children import the rest.
for package in (radpilot.agent, radpilot.knowledge, radpilot.tools):
    for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        try:
            importlib.import_module(module.name)
        except ImportError:
            pass
importlib.import_module("transformers.models.bert.modeling_bert")
from radpilot.app.cli import main

def child(job):
    os.environ["RADPILOT_STATE_DIR"] = job["state"]
    os.environ["RADPILOT_MODEL_DIR"] = job["models"]
    for fd, path in ((1, job["stdout"]), (2, job["stderr"])):
        os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
    try:
        code = main(job["argv"])
    except SystemExit as stop:  # argparse's usage errors
        code = stop.code if isinstance(stop.code, int) else 1
    except BaseException:  # what the interpreter would print for an uncaught exception
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)

for job in json.load(open(sys.argv[1])):
    pid = os.fork()
    if pid == 0:
        child(job)
    job["returncode"] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    print(json.dumps(job), flush=True)
"""


def run_cli(jobs: list[tuple[Case, list[str]]], folder: Path) -> list[CliResult]:
    """Every job through the fork driver, in `CLI_WORKERS` driver processes at once.

    Each job has its own state dir; the weights dir is shared and unpacked once up front
    (the weights are not under test, and ~70 copies of the embedder would fill a small disk).
    """
    models = folder / "models"
    extracted_model_dir(models)
    specs = []
    for case, arguments in jobs:
        (folder / case.name).mkdir(parents=True)
        files = {key: str(folder / case.name / key) for key in ("stdout", "stderr")}
        specs.append({"name": case.name, "argv": arguments, "models": str(models),
                      "state": str(folder / case.name / "state"), **files})  # fmt: skip
    shares = [specs[worker::CLI_WORKERS] for worker in range(CLI_WORKERS)]
    drivers = []
    for worker, share in enumerate(shares):
        (folder / f"jobs-{worker}.json").write_text(json.dumps(share))
        drivers.append(subprocess.Popen(
            [sys.executable, "-c", FORK_DRIVER, str(folder / f"jobs-{worker}.json")],
            stdout=subprocess.PIPE, text=True))  # fmt: skip
    done = {}
    for driver in drivers:
        output, _ = driver.communicate(timeout=900)
        for line in output.splitlines():
            job = json.loads(line)
            done[job["name"]] = CliResult(job["returncode"], Path(job["stdout"]).read_text(),
                                          Path(job["stderr"]).read_text())  # fmt: skip
    return [done[case.name] for case, _ in jobs]


def judge_cli(tally: Tally, case: Case, result: CliResult) -> None:
    output = result.stdout + result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.strip()]
    if TRACEBACK in output:
        tally.tracebacks += 1
        tally.problem(case, "traceback in the output")
    if result.returncode not in (0, 2):
        tally.crashes += 1
        tally.problem(case, f"exit code {result.returncode}: {result.stderr[-300:]!r}")
    elif result.returncode == 2 and (
        len(error_lines) != 1 or not error_lines[0].startswith("radpilot: error: ")
    ):
        tally.problem(case, f"exit code 2 without one `radpilot: error:` line: {error_lines}")
    check_outcome(tally, case, result.returncode != 0, result.stderr or result.stdout)
    check_secrets(tally, case, output)


def test_every_case_through_the_cli(corpus: Path, good_image: Path, tmp_path: Path) -> None:
    tally = Tally("CLI")
    jobs = [(case, cli_arguments(case, corpus, good_image)) for case in CASES]
    runnable = [(case, arguments) for case, arguments in jobs if arguments is not None]
    tally.not_applicable = len(jobs) - len(runnable)
    results = run_cli(runnable, tmp_path)
    assert len(results) == len(runnable), "a driver stopped early"
    for (case, _), result in zip(runnable, results, strict=True):
        tally.tried += 1
        judge_cli(tally, case, result)
    tally.report()


# --- REST API -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keyed_server(
    tmp_path_factory: pytest.TempPathFactory, data_dir: Path
) -> Iterator[tuple[str, dict[str, str], Path]]:
    state = tmp_path_factory.mktemp("bad-inputs-state")
    keys = KeyStore(state)
    tokens = {name: keys.create(name) for name in ("alice", "bob")}
    with running_server(state, "--upload-limit-mb", "5", "--rate-limit", "100000") as url:
        yield url, tokens, state


class Api:
    """alice's view of the server, recording and judging every response."""

    def __init__(self, url: str, tokens: dict[str, str], tally: Tally) -> None:
        self.http = httpx.Client(base_url=url, timeout=300)
        self.tokens = tokens
        self.tally = tally
        self.auth = {"Authorization": f"Bearer {tokens['alice']}"}

    def send(self, case: Case | None, method: str, path: str, **options: Any) -> httpx.Response:
        options.setdefault("headers", self.auth)
        try:
            if "/../" in path:
                response = self.send_unnormalised(method, path, options["headers"])
            else:
                response = self.http.request(method, path, **options)
        except (httpx.TransportError, OSError) as error:  # the server hung up or died
            self.tally.crashes += 1
            raise AssertionError(f"{case and case.name}: {error!r}") from error
        if case is not None:
            self.judge(case, response)
        return response

    def send_unnormalised(self, method: str, path: str, headers: dict[str, str]) -> httpx.Response:
        """httpx resolves `..` segments before sending; http.client sends the path as written,
        as an attacker's client would."""
        url = self.http.base_url
        connection = http.client.HTTPConnection(url.host, url.port, timeout=300)
        try:
            connection.request(method, path, headers=headers)
            reply = connection.getresponse()
            content_type = reply.getheader("content-type", "")
            return httpx.Response(reply.status, content=reply.read(),
                                  headers={"content-type": content_type})  # fmt: skip
        finally:
            connection.close()

    def judge(self, case: Case, response: httpx.Response) -> None:
        if response.status_code >= 500:
            self.tally.server_errors += 1
            self.tally.problem(case, f"{response.status_code}: {response.text[:200]}")
        if TRACEBACK in response.text:
            self.tally.tracebacks += 1
            self.tally.problem(case, "traceback in the response")
        if response.status_code >= 400 and not _is_error_body(response):
            self.tally.problem(case, f"{response.status_code} without a JSON error body: "
                                     f"{response.text[:200]!r}")  # fmt: skip
        check_secrets(self.tally, case, response.text)

    def session(self, owner: str = "alice") -> str:
        headers = {"Authorization": f"Bearer {self.tokens[owner]}"}
        response = self.send(None, "POST", "/v1/sessions", headers=headers)
        assert response.status_code == 201, response.text
        return str(response.json()["session_id"])

    def upload(self, case: Case | None, session: str, name: str, data: bytes) -> httpx.Response:
        return self.send(case, "POST", f"/v1/sessions/{session}/studies",
                         files={"file": (name, data)})  # fmt: skip

    def ask(self, case: Case | None, session: str, body: dict[str, Any]) -> httpx.Response:
        # Encoded here: JSON escapes unpaired surrogates that httpx's UTF-8 encoder rejects.
        return self.send(case, "POST", f"/v1/sessions/{session}/messages",
                         content=json.dumps(body).encode(),
                         headers={**self.auth, "Content-Type": "application/json"})  # fmt: skip


def _is_error_body(response: httpx.Response) -> bool:
    try:
        error = response.json()["error"]
        return bool(error["code"]) and bool(error["message"])
    except (ValueError, KeyError, TypeError):
        return False


def api_file_case(api: Api, case: Case) -> None:
    """Upload into a fresh session; what is accepted must then survive a question."""
    session = api.session()
    uploaded = api.upload(case, session, case.filename, case.data)
    check_outcome(api.tally, case, uploaded.status_code >= 400, uploaded.text)
    if uploaded.status_code == 201:
        answer = api.ask(case, session, {"text": QUESTION})
        if answer.status_code != 200:
            api.tally.problem(case, f"the question about it got {answer.status_code}")


def api_text_case(api: Api, case: Case, session: str) -> None:
    reply = api.ask(case, session, {"text": case.text})
    check_outcome(api.tally, case, reply.status_code >= 400, reply.text)
    if case.name == "text_html_js" and reply.status_code == 200:
        assert "<script>" not in json.dumps(reply.json()["claims"]), "markup echoed in claims"


def api_request_case(api: Api, case: Case, good: bytes) -> None:
    request = case.request
    assert request is not None
    ids = {"session": api.session(), "foreign_session": api.session("bob")}
    if request.needs_study:
        ids["study"] = api.upload(None, ids["session"], "cxr.png", good).json()["study_id"]
    replies = [api.send(case, request.method, request.path.format(**ids),
                        **request_options(request, api.auth))
               for _ in range(request.repeat)]  # fmt: skip
    refused = [reply.status_code >= 400 for reply in replies]
    check_outcome(api.tally, case, any(refused), " | ".join(r.text[:100] for r in replies))


def request_options(request: ApiRequest, auth: dict[str, str]) -> dict[str, Any]:
    headers = {**(auth if request.authorized else {}), **request.headers}
    options: dict[str, Any] = {"headers": headers}
    if request.json is not None:
        options["json"] = request.json
    if request.content is not None:
        options["content"] = request.content
    if request.form is not None:
        options["data"] = request.form
    if request.files is not None:
        options["files"] = request.files
    return options


def check_text_session_renders(api: Api, session: str) -> None:
    """The session that took every odd question still shows and reports."""
    view = api.send(None, "GET", f"/v1/sessions/{session}")
    assert view.status_code == 200, view.text
    for fmt in ("md", "json", "fhir"):
        report = api.send(None, "GET", f"/v1/sessions/{session}/report?format={fmt}")
        assert report.status_code == 200, (fmt, report.text[:300])


def check_nothing_identifying_stored(tally: Tally, state: Path) -> None:
    """De-identification happens before anything is stored: no DICOM's identity on disk."""
    secrets = {secret for case in CASES for secret in case.secrets}
    for path in (p for p in state.rglob("*") if p.is_file()):
        data = path.read_bytes()
        for secret in secrets:
            if secret.encode() in data:
                tally.problems.append(f"{path.relative_to(state)} holds {secret!r}")


def test_every_case_through_the_rest_api(
    keyed_server: tuple[str, dict[str, str], Path], good_image: Path
) -> None:
    url, tokens, state = keyed_server
    tally = Tally("REST API")
    api = Api(url, tokens, tally)
    good = good_image.read_bytes()
    text_session = api.session()
    assert api.upload(None, text_session, good_image.name, good).status_code == 201
    for case in CASES:
        tally.tried += 1
        if case.is_file:
            api_file_case(api, case)
        elif case.category == "text":
            api_text_case(api, case, text_session)
        else:
            api_request_case(api, case, good)
    check_text_session_renders(api, text_session)
    assert httpx.get(f"{url}/readyz").status_code == 200
    session = api.session()
    assert api.upload(None, session, good_image.name, good).status_code == 201
    answer = api.ask(None, session, {"text": "Is there an effusion?"})
    assert answer.status_code == 200 and answer.json()["claims"], answer.text[:300]
    check_nothing_identifying_stored(tally, state)
    tally.report()


# --- UI -----------------------------------------------------------------------------------


@dataclass
class UiOutcome:
    refused: bool
    shown: str  # what the user reads: the toast's text or the last chat message


def ui_turn(send: Callable[..., Iterator[Any]], question: str, current: str | None,
            state: dict[str, Any], history: list[Any]) -> tuple[UiOutcome, list[Any]]:  # fmt: skip
    """Run the Ask button's callback to the end, as Gradio would."""
    import gradio as gr

    try:
        for update in send(question, current, None, "", "", state, history):
            history = update[0]
    except gr.Error as error:
        return UiOutcome(True, str(error.message)), history
    last = str(history[-1]["content"]) if history else ""
    return UiOutcome(last.startswith("⚠️"), last), history


def ui_case(tally: Tally, case: Case, send: Callable[..., Iterator[Any]], corpus: Path,
            image: Path, text_state: dict[str, Any]) -> None:  # fmt: skip
    from radpilot.app.ui import preview

    if case.is_file:
        path = str(case_path(corpus, case))
        preview(path)  # the upload's preview: a picture or nothing, never an exception
        outcome, _ = ui_turn(send, QUESTION, path, {}, [])
    elif case.category == "text":
        assert case.text is not None
        history = text_state.setdefault("history", [])
        outcome, text_state["history"] = ui_turn(send, case.text, str(image),
                                                 text_state["state"], history)  # fmt: skip
    else:  # the replays: the same file and question twice in one browser session
        state: dict[str, Any] = {}
        first, history = ui_turn(send, QUESTION, str(image), state, [])
        outcome, _ = ui_turn(send, QUESTION, str(image), state, history)
        outcome.refused |= first.refused
    if not outcome.shown.strip():
        tally.problem(case, "the user sees nothing")
    if TRACEBACK in outcome.shown:
        tally.tracebacks += 1
        tally.problem(case, "traceback shown to the user")
    if "<script>" in outcome.shown:
        tally.problem(case, "markup from the question reached the chat unescaped")
    check_outcome(tally, case, outcome.refused, outcome.shown)
    check_secrets(tally, case, outcome.shown)


def test_every_case_through_the_ui_callbacks(corpus: Path, good_image: Path) -> None:
    from radpilot.app.access import open_access
    from radpilot.app.api import AgentHolder
    from radpilot.app.ui import UiFiles, build_ui
    from radpilot.assembly import build_agent
    from radpilot.settings import Settings

    settings = Settings()
    agent = build_agent(settings)
    blocks = build_ui(AgentHolder(settings, agent.context.registry, agent), open_access(settings),
                      UiFiles(settings.state_dir / "ui"), agent.delete_session, None)  # fmt: skip
    send = next(f.fn for f in blocks.fns.values() if getattr(f.fn, "__name__", "") == "send")
    tally = Tally("UI callbacks")
    text_state: dict[str, Any] = {"state": {}}
    for case in CASES:
        if case.category == "api" and not case.name.startswith("api_replay"):
            tally.not_applicable += 1  # HTTP-level misuse: the UI has no such request
            continue
        tally.tried += 1
        try:
            ui_case(tally, case, send, corpus, good_image, text_state)
        except Exception as error:
            tally.crashes += 1
            tally.problem(case, f"{type(error).__name__}: {str(error)[:200]}")
    tally.report()
