"""Isolation and auth: one API key can never reach another key's sessions, studies or
artefacts — not by reading, streaming, uploading, deleting, citing study ids or guessing ids."""

from __future__ import annotations

import hmac
import json
import re
from pathlib import Path

import httpx
import pytest

from radpilot.app.client import ApiClientError, Client
from radpilot.app.keys import KeyStore
from tests.server import running_server

pytestmark = pytest.mark.integration
ID = re.compile(r"^(se|st|ar)_[A-Za-z0-9_-]{22}$")  # 16 random bytes, url-safe base64


@pytest.fixture(scope="module")
def two_keys(tmp_path_factory: pytest.TempPathFactory, data_dir: Path):  # type: ignore[no-untyped-def]
    state = tmp_path_factory.mktemp("isolation-state")
    keys = KeyStore(state)
    tokens = {"alice": keys.create("alice"), "bob": keys.create("bob")}
    with running_server(state) as url:
        yield url, tokens, state


@pytest.fixture(scope="module")
def alices_session(two_keys, data_dir: Path) -> dict[str, str]:  # type: ignore[no-untyped-def]
    url, tokens, _ = two_keys
    image = data_dir / "nih" / "images" / "00000211_010.png"
    with Client(url, api_key=tokens["alice"], timeout=120) as alice:
        session = alice.create_session()
        study = alice.upload_study(session, image).study_id
        answer = alice.ask(session, "Where is the cardiomegaly?")
    artefacts = [a.id for e in answer.evidence for a in e.artefacts]
    assert artefacts, "the localization should have produced an overlay"
    return {"session": session, "study": study, "artefact": artefacts[0]}


def test_another_key_gets_404_for_everything_of_alices(two_keys, alices_session) -> None:  # type: ignore[no-untyped-def]
    url, tokens, _ = two_keys
    session, study, artefact = (alices_session[k] for k in ("session", "study", "artefact"))
    bob_headers = {"Authorization": f"Bearer {tokens['bob']}"}
    with httpx.Client(base_url=url, headers=bob_headers, timeout=60) as bob:
        attempts = [
            bob.get(f"/v1/sessions/{session}"),
            bob.get(f"/v1/sessions/{session}/report"),
            bob.get(f"/v1/sessions/{session}/report", params={"format": "fhir"}),
            bob.post(f"/v1/sessions/{session}/messages", json={"text": "hi"}),
            bob.post(f"/v1/sessions/{session}/messages", json={"text": "hi"},
                     headers={"Accept": "text/event-stream"}),
            bob.post(f"/v1/sessions/{session}/studies",
                     files={"file": ("x.png", b"\x89PNG\r\n\x1a\n", "image/png")}),
            bob.get(f"/v1/artefacts/{artefact}"),
            bob.delete(f"/v1/sessions/{session}"),
        ]  # fmt: skip
        for reply in attempts:
            assert reply.status_code == 404, (reply.request.url, reply.text)
            assert reply.json()["error"]["code"] in ("unknown_session", "unknown_artefact")
        # Bob's own session cannot cite Alice's study either (the API takes no study ids).
        own = bob.post("/v1/sessions").json()["session_id"]
        cited = bob.post(f"/v1/sessions/{own}/messages",
                         json={"text": "Is there an effusion?", "study_ids": [study]})  # fmt: skip
        assert cited.status_code in (400, 404, 422) and "study" in cited.text
        # There is no route that lists sessions or studies.
        assert bob.get("/v1/sessions").status_code in (404, 405)
    with Client(url, api_key=tokens["alice"]) as alice:  # and Alice still has everything
        assert alice.session(session).session_id == session
        assert alice.artefact(artefact).startswith(b"\x89PNG")


def test_guessed_ids_reveal_nothing(two_keys, alices_session) -> None:  # type: ignore[no-untyped-def]
    url, tokens, _ = two_keys
    assert all(ID.match(alices_session[k]) for k in ("session", "study", "artefact"))
    session = alices_session["session"]
    near_misses = [session[:-1] + ("A" if session[-1] != "A" else "B"), "se_" + "A" * 22,
                   "../" + session, session.upper()]  # fmt: skip
    with Client(url, api_key=tokens["alice"]) as alice:
        for guess in near_misses:
            with pytest.raises(ApiClientError) as error:
                alice.session(guess)
            assert error.value.status == 404
        fresh = {alice.create_session() for _ in range(20)}
    assert len(fresh) == 20 and all(ID.match(s) for s in fresh)


def test_keys_are_stored_hashed_and_compared_in_constant_time(
    two_keys,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    _, tokens, state = two_keys
    stored = (state / "keys" / "api_keys.json").read_text()
    assert all(token not in stored for token in tokens.values())
    assert {k["name"] for k in json.loads(stored)} == {"alice", "bob"}
    assert (state / "keys" / "api_keys.json").stat().st_mode & 0o077 == 0  # owner only
    compared: list[tuple[str, str]] = []
    constant_time = hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        compared.append((a, b))
        return constant_time(a, b)

    monkeypatch.setattr("radpilot.app.keys.hmac.compare_digest", spy)
    assert KeyStore(state).identify(tokens["bob"]) == "bob"
    assert len(compared) == 2  # every stored key is compared, whichever matches
    assert KeyStore(state).identify("rp_not-a-key") is None
