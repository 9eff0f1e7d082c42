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
        info = await client.call_tool("image_info", {"arguments": {"study_id": study["study_id"]}})
        answer = await client.call_tool("ask", {"session_id": session,
                                                "question": "Is there an effusion?"})  # fmt: skip
        return {
            "names": names,
            "study": study,
            "info": json.loads(info.content[0].text),  # type: ignore[union-attr]
            "answer": json.loads(answer.content[0].text),  # type: ignore[union-attr]
        }


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
    port = free_port()
    process = subprocess.Popen(
        command("--transport", "http", "--port", str(port)),
        env={**os.environ, "RADPILOT_STATE_DIR": str(tmp_path)},
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
    finally:
        process.terminate()
        process.wait(timeout=30)
