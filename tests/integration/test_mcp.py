"""`radpilot mcp` over stdio and streamable HTTP, driven by the MCP SDK's own client."""

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.server import free_port

pytestmark = pytest.mark.integration


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "radpilot.app.cli", "mcp", *args]


async def conversation(server: object, image: Path) -> dict[str, object]:
    from mcp import Client

    async with Client(server) as client:  # type: ignore[arg-type]
        names = {tool.name for tool in (await client.list_tools()).tools}
        session = (await client.call_tool("new_session", {})).content[0].text  # type: ignore[union-attr]
        added = await client.call_tool("add_study", {"session_id": session, "path": str(image)})
        study = json.loads(added.content[0].text)  # type: ignore[union-attr]
        scoped = {"session_id": session, "arguments": {"study_id": study["study_id"]}}
        info = await client.call_tool("image_info", scoped)
        answer = await client.call_tool("ask", {"session_id": session,
                                                "question": "Is there an effusion?"})  # fmt: skip
        return {
            "names": names,
            "study": study,
            "info": json.loads(info.content[0].text),  # type: ignore[union-attr]
            "answer": json.loads(answer.content[0].text),  # type: ignore[union-attr]
        }


def refusal(result: object) -> dict[str, str]:
    """The `{code, message}` of a refused call (the REST API's error body)."""
    assert result.is_error  # type: ignore[attr-defined]
    text = result.content[0].text  # type: ignore[attr-defined]
    error: dict[str, str] = json.loads(text[text.index("{"):])["error"]
    return error


async def attacks(server: object, image: Path) -> list[dict[str, str]]:
    """What another session, a path outside the import folder and a made-up session get."""
    from mcp import Client

    async with Client(server) as client:  # type: ignore[arg-type]
        owner = (await client.call_tool("new_session", {})).content[0].text  # type: ignore[union-attr]
        added = await client.call_tool("add_study", {"session_id": owner, "path": str(image)})
        study = json.loads(added.content[0].text)["study_id"]  # type: ignore[union-attr]
        intruder = (await client.call_tool("new_session", {})).content[0].text  # type: ignore[union-attr]
        calls = [
            ("classify_findings", {"session_id": intruder, "arguments": {"study_id": study}}),
            ("image_info", {"session_id": "se_made_up", "arguments": {"study_id": study}}),
            ("add_study", {"session_id": intruder, "path": "/etc/passwd"}),
            ("add_study", {"session_id": intruder, "path": str(image.parent / ".." / "x.png")}),
            ("add_study", {"session_id": intruder, "path": "/no/such/file.png"}),
        ]
        return [refusal(await client.call_tool(name, arguments)) for name, arguments in calls]


def check(result: dict[str, object]) -> None:
    assert {"new_session", "add_study", "ask", "classify_findings", "localize_finding",
            "image_info"} <= result["names"]  # type: ignore[operator]  # fmt: skip
    assert result["study"]["qc_ok"]  # type: ignore[index]
    assert result["info"]["output"]["width"] == 512  # type: ignore[index]
    claims = result["answer"]["claims"]  # type: ignore[index]
    assert claims and all(c["evidence"] or c["certainty"] == "stated" for c in claims)


@pytest.fixture(scope="module")
def image(data_dir: Path) -> Path:
    return (data_dir / "nih" / "images" / "00000032_037.png").resolve()


def test_stdio(tmp_path: Path, image: Path) -> None:
    from mcp.client.stdio import StdioServerParameters

    params = StdioServerParameters(
        command=sys.executable, args=command()[1:],
        env={**os.environ, "RADPILOT_STATE_DIR": str(tmp_path)},
    )  # fmt: skip
    check(asyncio.run(conversation(params, image)))


def test_streamable_http(tmp_path: Path, image: Path) -> None:
    """Over HTTP the tools are session-scoped, paths are read only from the import folder,
    and every refusal carries its reason (the same for a missing file as for /etc/passwd)."""
    port = free_port()
    process = subprocess.Popen(
        command("--transport", "http", "--port", str(port)),
        env={**os.environ, "RADPILOT_STATE_DIR": str(tmp_path),
             "RADPILOT_IMPORT_DIR": str(image.parent)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}/mcp"
        deadline = time.monotonic() + 120
        while True:
            try:
                check(asyncio.run(conversation(url, image)))
                break
            except Exception:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(1)
        codes = [error["code"] for error in asyncio.run(attacks(url, image))]
        assert codes == ["unknown_study", "unknown_session", "path_not_allowed",
                         "path_not_allowed", "path_not_allowed"]  # fmt: skip
    finally:
        process.terminate()
        process.wait(timeout=30)


def keyed_client(url: str, key: str | None) -> object:
    """An MCP client transport that sends `Authorization: Bearer <key>` (or no key)."""
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return streamable_http_client(url, http_client=create_mcp_http_client(headers=headers))


async def cross_key(url: str, keys: dict[str, str], image: Path) -> list[object]:
    """Key A's session and study as seen by no key, a wrong key and key B."""
    from mcp import Client

    async with Client(keyed_client(url, keys["a"])) as client:  # type: ignore[arg-type]
        session = (await client.call_tool("new_session", {})).content[0].text  # type: ignore[union-attr]
        added = await client.call_tool("add_study", {"session_id": session, "path": str(image)})
        study = json.loads(added.content[0].text)["study_id"]  # type: ignore[union-attr]
        own = await client.call_tool("image_info", {"session_id": session,
                                                    "arguments": {"study_id": study}})  # fmt: skip
    outcomes: list[object] = [not own.is_error]
    for key in (None, "rp_wrong", keys["b"]):
        async with Client(keyed_client(url, key)) as client:  # type: ignore[arg-type]
            for name, arguments in (
                ("image_info", {"session_id": session, "arguments": {"study_id": study}}),
                ("ask", {"session_id": session, "question": "Is there an effusion?"}),
            ):
                outcomes.append(refusal(await client.call_tool(name, arguments))["code"])
    return outcomes


def test_http_with_keys_scopes_sessions_to_the_key_that_made_them(
    tmp_path: Path, image: Path
) -> None:
    env = {**os.environ, "RADPILOT_STATE_DIR": str(tmp_path),
           "RADPILOT_IMPORT_DIR": str(image.parent)}  # fmt: skip
    keys = {}
    for name in ("a", "b"):
        made = subprocess.run([sys.executable, "-m", "radpilot.app.cli", "keys", "create", name],
                              env=env, capture_output=True, text=True, check=True)  # fmt: skip
        keys[name] = made.stdout.strip()
    port = free_port()
    process = subprocess.Popen(command("--transport", "http", "--port", str(port)), env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}/mcp"
        deadline = time.monotonic() + 120
        while True:
            try:
                outcomes = asyncio.run(cross_key(url, keys, image))
                break
            except Exception:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(1)
        assert outcomes == [True, "unauthorized", "unauthorized", "unauthorized",
                            "unauthorized", "unknown_session", "unknown_session"]  # fmt: skip
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_http_refuses_a_network_address_without_keys(tmp_path: Path) -> None:
    reply = subprocess.run(
        command("--transport", "http", "--host", "0.0.0.0", "--port", str(free_port())),
        env={**os.environ, "RADPILOT_STATE_DIR": str(tmp_path)},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert reply.returncode != 0
    assert "without API keys" in reply.stderr and "Traceback" not in reply.stderr


async def refusals(server: object, image: Path, import_dir: Path) -> list[dict[str, str]]:
    """What a client's mistakes get from `add_study` and an expert tool."""
    import base64

    from tests.factories import chest_like, make_dicom

    def encoded(data: bytes) -> str:
        return base64.b64encode(data).decode()

    from mcp import Client

    async with Client(server) as client:  # type: ignore[arg-type]
        session = (await client.call_tool("new_session", {})).content[0].text  # type: ignore[union-attr]
        calls: list[dict[str, object]] = [
            {},  # neither path nor bytes
            {"path": str(image), "image_base64": encoded(b"x")},  # both
            {"image_base64": "not base64!"},
            {"image_base64": encoded(image.read_bytes())},  # over the 0.05 MB limit
            {"image_base64": encoded(b"a text file, not an image\n" * 10)},
            {"image_base64": encoded(make_dicom(modality="MR", pixels=chest_like(64, 64)))},
            {"path": str(import_dir / "missing.png")},
        ]
        outcomes = [refusal(await client.call_tool("add_study", {"session_id": session, **c}))
                    for c in calls]  # fmt: skip
        scoped = {"session_id": session, "arguments": {"study_id": "st_" + "Q" * 22}}
        outcomes.append(refusal(await client.call_tool("classify_findings", scoped)))
        return outcomes


def test_every_refusal_states_its_reason(tmp_path: Path, image: Path) -> None:
    """In process, as a local client with an import folder and a small upload limit: each
    mistake gets its own code and a message that says what to do, never a generic failure."""
    from radpilot.app.mcp_server import build_mcp_server
    from radpilot.assembly import build_agent
    from radpilot.settings import Settings

    settings = Settings(state_dir=tmp_path / "state", import_dir=tmp_path, upload_limit_mb=0.05)
    server = build_mcp_server(build_agent(settings), paths_allowed=False)
    errors = asyncio.run(refusals(server, image, tmp_path))
    assert [e["code"] for e in errors] == [
        "bad_request", "bad_request", "bad_request", "upload_too_large", "unsupported_format",
        "wrong_modality", "unreadable", "unknown_study",
    ]  # fmt: skip
    assert all(len(e["message"]) > 10 and "Error executing" not in e["message"] for e in errors)
