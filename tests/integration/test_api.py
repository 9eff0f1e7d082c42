"""The REST API on a real uvicorn server over loopback, through the Python client."""

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from radpilot.app.client import ApiClientError, Client
from radpilot.app.keys import KeyStore
from tests.factories import chest_like, make_dicom, png_bytes, png_header_only
from tests.server import running_server

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("api-state")


@pytest.fixture(scope="module")
def server(server_state: Path, data_dir: Path):  # type: ignore[no-untyped-def]
    with running_server(server_state) as url:
        yield url


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory, data_dir: Path):  # type: ignore[no-untyped-def]
    state = tmp_path_factory.mktemp("keyed-state")
    keys = KeyStore(state)
    tokens = {"alice": keys.create("alice"), "bob": keys.create("bob"),
              "carol": keys.create("carol")}  # fmt: skip
    with running_server(state, "--rate-limit", "10", "--upload-limit-mb", "0.05") as url:
        yield url, tokens


@pytest.fixture(scope="module")
def image(data_dir: Path) -> Path:
    return next((data_dir / "nih" / "images").glob("*.png"))


def test_a_conversation_over_every_route(server: str, image: Path) -> None:
    with Client(server) as rp:
        assert httpx.get(f"{server}/healthz").json() == {"status": "ok"}
        assert {t["name"] for t in rp.tools()} >= {"classify_findings", "localize_finding"}
        session = rp.create_session()
        uploaded = rp.upload_study(session, image)
        assert uploaded.qc_ok and uploaded.study_id.startswith("st_")
        answer = rp.ask(session, "What do you see?")
        assert answer.claims and answer.trace_id
        assert all(c.evidence or c.certainty == "stated" for c in answer.claims)
        located = rp.ask(session, "Where is the cardiomegaly?")
        overlays = [a for e in located.evidence for a in e.artefacts]
        assert overlays, "localization always draws an overlay"
        assert rp.artefact(overlays[0].id)[:8] == b"\x89PNG\r\n\x1a\n"
        assert json.loads(rp.report(session, "json"))["trace_id"] == located.trace_id
        view = rp.session(session)
        assert [m.role for m in view.messages] == ["user", "assistant"] * 2
        assert view.evidence and view.studies[0].study_id == uploaded.study_id
        assert rp.report(session, "md").startswith("# Chest radiograph report")
        assert '"DiagnosticReport"' in rp.report(session, "fhir")
        metrics = httpx.get(f"{server}/metrics").text
        assert 'radpilot_tool_seconds_count{tool="classify_findings"}' in metrics
        rp.delete_session(session)
        with pytest.raises(ApiClientError) as error:
            rp.session(session)
        assert error.value.status == 404


def test_deleting_a_session_removes_its_studies_and_artefacts_from_disk(
    server: str, server_state: Path, image: Path
) -> None:
    with Client(server) as rp:
        kept_session = rp.create_session()
        kept = rp.upload_study(kept_session, image).study_id
        session = rp.create_session()
        study = rp.upload_study(session, image).study_id
        located = rp.ask(session, "Where is the cardiomegaly?")
        artefacts = [a.id for e in located.evidence for a in e.artefacts]
        assert artefacts, "localization always draws an overlay"
        files = [server_state / "artefacts" / f"{a}.png" for a in artefacts]
        assert all(f.is_file() for f in files) and (server_state / "studies" / study).is_dir()

        rp.delete_session(session)
        assert not (server_state / "studies" / study).exists()
        assert not any(f.exists() for f in files)
        with pytest.raises(ApiClientError) as error:  # its ownership row went with it
            rp.artefact(artefacts[0])
        assert error.value.status == 404
        assert (server_state / "studies" / kept / "study.json").is_file()
        assert rp.session(kept_session).studies[0].study_id == kept


def test_sse_streams_plan_before_tools_before_final(server: str, image: Path) -> None:
    with Client(server) as rp:
        session = rp.create_session()
        rp.upload_study(session, image)
        kinds = [event.kind for event in rp.stream(session, "Is there an effusion?")]
    assert kinds.index("plan") < kinds.index("tool_start") < kinds.index("tool_end")
    assert kinds[-1] == "final"


BAD_UPLOADS = {
    "empty.png": b"",
    "truncated.png": png_bytes(chest_like(300, 300))[:400],
    "text.png": b"not an image\n" * 50,
    "bomb.png": png_header_only(40000, 40000),
    "ct.dcm": make_dicom(modality="CT"),
    "nopixels.dcm": make_dicom(with_pixels=False),
}


@pytest.mark.parametrize("name", sorted(BAD_UPLOADS))
def test_bad_uploads_are_clear_4xx(server: str, name: str) -> None:
    with Client(server) as rp:
        session = rp.create_session()
        with pytest.raises(ApiClientError) as error:
            rp.upload_study(session, BAD_UPLOADS[name])
        assert 400 <= error.value.status < 500 and error.value.message
        assert "Traceback" not in error.value.message
        assert rp.session(session).studies == []
    assert httpx.get(f"{server}/healthz").status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("post", "/v1/sessions/se_nope/messages", {"text": "hi"}, 404),
        ("get", "/v1/artefacts/ar_guess", None, 404),
        ("get", "/v1/nothing-here", None, 404),
    ],
)
def test_client_mistakes_are_json_errors(
    server: str, method: str, path: str, body: object, status: int
) -> None:
    reply = httpx.request(method, f"{server}{path}", json=body)
    assert reply.status_code == status
    assert set(reply.json()["error"]) == {"code", "message"}


def test_malformed_messages_are_422(server: str) -> None:
    with Client(server) as rp:
        session = rp.create_session()
    for body in ({}, {"text": ""}, {"text": "x" * 5000}, {"text": "hi", "extra": 1}):
        reply = httpx.post(f"{server}/v1/sessions/{session}/messages", json=body)
        assert reply.status_code == 422, body
        assert reply.json()["error"]["code"] == "invalid_request"


def test_keys_are_required_and_sessions_private(keyed: tuple[str, dict[str, str]]) -> None:
    url, tokens = keyed
    assert httpx.post(f"{url}/v1/sessions").status_code == 401
    wrong = httpx.post(f"{url}/v1/sessions", headers={"Authorization": "Bearer rp_wrong"})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "unauthorized"
    with Client(url, api_key=tokens["alice"]) as alice, Client(url, api_key=tokens["bob"]) as bob:
        session = alice.create_session()
        assert alice.session(session).session_id == session
        attempts = [
            lambda: bob.session(session),
            lambda: bob.ask(session, "hi"),
            lambda: bob.report(session),
            lambda: bob.delete_session(session),
        ]
        for attempt in attempts:
            with pytest.raises(ApiClientError) as error:
                attempt()
            assert error.value.status == 404
        assert alice.session(session).session_id == session


def test_serving_beyond_loopback_without_keys_is_refused(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "radpilot.app.cli", "serve", "--host", "0.0.0.0"],
        capture_output=True, text=True, timeout=60,
        env={**__import__("os").environ, "RADPILOT_STATE_DIR": str(tmp_path)},
    )  # fmt: skip
    assert result.returncode == 2
    assert "without API keys" in result.stderr


def test_uploads_over_the_limit_are_413(keyed: tuple[str, dict[str, str]], image: Path) -> None:
    url, tokens = keyed
    with Client(url, api_key=tokens["alice"]) as alice:
        session = alice.create_session()
        with pytest.raises(ApiClientError) as error:
            alice.upload_study(session, b"\x89PNG\r\n\x1a\n" + b"\0" * 80_000)
        assert error.value.status == 413 and error.value.code == "upload_too_large"


def test_each_key_is_rate_limited(keyed: tuple[str, dict[str, str]]) -> None:
    url, tokens = keyed
    headers = {"Authorization": f"Bearer {tokens['carol']}"}
    statuses = [httpx.get(f"{url}/v1/tools", headers=headers).status_code for _ in range(12)]
    assert statuses[:10] == [200] * 10 and statuses[10:] == [429, 429]
    other = httpx.get(f"{url}/v1/tools", headers={"Authorization": f"Bearer {tokens['bob']}"})
    assert other.status_code == 200  # limits are per key


def test_the_async_client(server: str, image: Path) -> None:
    import asyncio

    from radpilot.app.client import AsyncClient

    async def conversation() -> tuple[list[str], int]:
        async with AsyncClient(server) as rp:
            session = await rp.create_session()
            await rp.upload_study(session, image)
            answer = await rp.ask(session, "Is there an effusion?")
            kinds = [event.kind async for event in rp.stream(session, "Why did you say that?")]
            return kinds, len(answer.claims)

    kinds, claims = asyncio.run(conversation())
    assert claims > 0 and kinds[-1] == "final"
