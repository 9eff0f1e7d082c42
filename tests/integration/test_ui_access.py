"""The Gradio UI's door, through its own callbacks: the REST API's keys and rate limit, each
conversation owned by the key that started it, and deleting a conversation deletes what the
UI handed out (overlay copies, report exports) with the session."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from radpilot.settings import Settings

pytestmark = pytest.mark.integration
LIMIT = 20  # requests per key per minute


class Ui:
    """`radpilot serve`'s app (REST and the UI mounted on it), with the UI's own `send` and
    `delete` callbacks: the very functions the browser's requests run."""

    def __init__(self, settings: Settings, upload_folder: Path, requests_per_minute: int) -> None:
        import gradio as gr
        from fastapi.testclient import TestClient
        from starlette.routing import Mount

        from radpilot.app.api import create_app
        from radpilot.assembly import build_agent

        self.error = gr.Error
        self.agent = build_agent(settings)
        app = create_app(settings, agent=self.agent, requests_per_minute=requests_per_minute)
        self.http = TestClient(app)
        gradio_app = next(r.app for r in app.routes if isinstance(r, Mount))
        blocks = gradio_app.get_blocks()  # type: ignore[attr-defined]
        callbacks = {getattr(f.fn, "__name__", ""): f.fn for f in blocks.fns.values()}
        self._send: Callable[..., Iterator[Any]] = callbacks["send"]
        self._delete: Callable[..., Any] = callbacks["delete"]
        self.files_root = upload_folder / "radpilot"  # UiFiles' folder in Gradio's
        self.state_dir = settings.state_dir

    def send(self, text: str, image: Path | None, key: str, state: dict[str, Any]) -> Any:
        """The last thing the browser is shown: (chat, state, gallery, table, report, files)."""
        *_, last = self._send(text, str(image) if image else None, None, "", key, state, [])
        return last

    def refusal(self, call: Callable[..., Any], *args: Any) -> str:
        """The message the browser shows when `call(*args)` is refused."""
        with pytest.raises(self.error) as refused:
            call(*args)
        return str(refused.value)

    def delete(self, key: str, state: dict[str, Any]) -> Any:
        return self._delete(key, state)


@pytest.fixture(scope="module")
def keyed(
    tmp_path_factory: pytest.TempPathFactory, upload_folder: Path
) -> tuple[Ui, dict[str, str]]:
    from radpilot.app.keys import KeyStore

    state_dir = tmp_path_factory.mktemp("ui-state")
    keys = {name: KeyStore(state_dir).create(name) for name in ("alice", "bob", "carol")}
    ui = Ui(Settings(state_dir=state_dir), upload_folder, requests_per_minute=LIMIT)
    return ui, keys


@pytest.fixture(scope="module")
def upload_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Gradio's upload folder (where the UI's files live) in a temp folder of this module."""
    folder = tmp_path_factory.mktemp("gradio")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRADIO_TEMP_DIR", str(folder))
        yield folder


@pytest.fixture(scope="module")
def image(data_dir: Path) -> Path:
    return data_dir / "nih" / "images" / "00000032_037.png"


def test_the_ui_needs_a_valid_key(keyed: tuple[Ui, dict[str, str]], image: Path) -> None:
    ui, _ = keyed
    for key in ("", "rp_not_a_key"):
        state: dict[str, Any] = {}
        message = ui.refusal(ui.send, "Is there an effusion?", image, key, state)
        assert "a valid API key is required" in message
        assert state == {}  # nothing was started for a caller without a key


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_the_ui_shares_the_rate_limit(keyed: tuple[Ui, dict[str, str]]) -> None:
    """The limit counts per key across doors: carol's UI requests and her REST requests
    share one budget, and once it is spent both refuse her (before anything runs); alice,
    another key, is not slowed by her."""
    ui, keys = keyed
    state: dict[str, Any] = {}
    for _ in range(LIMIT - 1):
        ui.delete(keys["carol"], state)  # each checks the key, as every UI request does
    assert ui.http.get("/v1/sessions/se_none", headers=bearer(keys["carol"])).status_code == 404
    assert "rate limit exceeded" in ui.refusal(ui.delete, keys["carol"], state)
    assert "rate limit exceeded" in ui.refusal(
        ui.send, "Is there an effusion?", None, keys["carol"], state)
    refused = ui.http.post("/v1/sessions", headers=bearer(keys["carol"]))
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limited"
    assert ui.http.post("/v1/sessions", headers=bearer(keys["alice"])).status_code == 201


def ui_turn(ui: Ui, key: str, image: Path) -> tuple[dict[str, Any], list[Path], list[str]]:
    """One UI turn that localizes: the tab's state, the files handed to the browser and the
    artefact ids registered with the session."""
    state: dict[str, Any] = {}
    _, _, gallery, _, report, downloads = ui.send("Where is the effusion?", image, key, state)[:6]
    session = state["session_id"]
    handed_out = [Path(p) for p, _ in gallery] + [Path(p) for p in downloads]
    assert gallery and "Effusion" in report and all(p.is_file() for p in handed_out)
    assert all(p.is_relative_to(ui.files_root / session) for p in handed_out)
    answer = ui.agent.state(session).answer
    assert answer is not None
    artefacts = [a.id for e in answer.evidence for a in e.artefacts]
    for artefact in artefacts:  # registered with the session: served to its key over REST
        assert ui.http.get(f"/v1/artefacts/{artefact}", headers=bearer(key)).status_code == 200
    assert artefacts
    return state, handed_out, artefacts


def test_a_ui_conversation_belongs_to_its_key_and_deleting_it_removes_its_files(
    keyed: tuple[Ui, dict[str, str]], image: Path
) -> None:
    ui, keys = keyed
    alice, handed_out, artefacts = ui_turn(ui, keys["alice"], image)
    session = alice["session_id"]
    # Bob, holding Alice's tab state, gets a conversation of his own, cannot delete hers,
    # and cannot read it or its artefacts over REST either.
    stolen = dict(alice)
    ui.send("Is there an effusion?", None, keys["bob"], stolen)
    assert stolen["session_id"] != session
    assert "unknown session" in ui.refusal(ui.delete, keys["bob"], dict(alice))
    assert ui.http.get(f"/v1/sessions/{session}", headers=bearer(keys["bob"])).status_code == 404
    assert ui.http.get(f"/v1/artefacts/{artefacts[0]}",
                       headers=bearer(keys["bob"])).status_code == 404  # fmt: skip
    assert all(p.is_file() for p in handed_out)

    ui.delete(keys["alice"], alice)
    assert alice == {} and not (ui.files_root / session).exists()
    assert not any(p.exists() for p in handed_out)
    gone = ui.http.get(f"/v1/sessions/{session}", headers=bearer(keys["alice"]))
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "unknown_session"
    for artefact in artefacts:
        assert ui.http.get(f"/v1/artefacts/{artefact}",
                           headers=bearer(keys["alice"])).status_code == 404  # fmt: skip


def test_deleting_over_rest_removes_the_ui_files_too(
    keyed: tuple[Ui, dict[str, str]], image: Path
) -> None:
    ui, keys = keyed
    alice, handed_out, _ = ui_turn(ui, keys["alice"], image)
    session = alice["session_id"]
    deleted = ui.http.delete(f"/v1/sessions/{session}", headers=bearer(keys["alice"]))
    assert deleted.status_code == 204
    assert not (ui.files_root / session).exists() and not any(p.exists() for p in handed_out)
    # The tab still holds the deleted id: its next question says so, then starts afresh.
    assert "was deleted" in ui.refusal(ui.send, "Is there an effusion?", None,
                                       keys["alice"], alice)  # fmt: skip
    assert alice == {}


def test_gradio_serves_no_file_of_the_state_dir(keyed: tuple[Ui, dict[str, str]]) -> None:
    """Gradio serves every file under its allowed paths to anyone, without keys: the state
    dir (databases, studies, artefacts, keys) is not one of them."""
    ui, _ = keyed
    for name in ("app.sqlite", "sessions.sqlite", "keys/api_keys.json"):
        path = ui.state_dir / name
        assert path.is_file()
        assert ui.http.get(f"/gradio_api/file={path}").status_code in (403, 404)


def test_an_undeclared_method_is_405(keyed: tuple[Ui, dict[str, str]]) -> None:
    ui, keys = keyed
    reply = ui.http.request("TRACE", "/v1/sessions", headers=bearer(keys["bob"]))
    assert reply.status_code == 405 and "POST" in reply.headers["allow"]
    assert reply.json()["error"]["code"] == "method_not_allowed"
