"""Every interface lists the tools the agent runs, because all of them take their tools from
the composition root (`radpilot.assembly`): the REST API's `/v1/tools`, `radpilot tools list`
(another process, configured by the environment only) and the MCP server, with and without a
vision-language model."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from radpilot.settings import Settings

pytestmark = pytest.mark.integration

MCP_SESSION_TOOLS = {"new_session", "add_study", "ask"}  # MCP's own, around the expert tools
VLM = {"RADPILOT_VLM_URL": "http://127.0.0.1:9/v1", "RADPILOT_VLM_MODEL": "medgemma"}


async def mcp_names(server: object) -> set[str]:
    from mcp import Client

    async with Client(server) as client:  # type: ignore[arg-type]
        return {tool.name for tool in (await client.list_tools()).tools}


def cli_names(env: dict[str, str]) -> set[str]:
    listed = subprocess.run([sys.executable, "-m", "radpilot.app.cli", "tools", "list", "--json"],
                            env={**os.environ, **env}, capture_output=True, text=True,
                            timeout=120, check=True)  # fmt: skip
    return {spec["name"] for spec in json.loads(listed.stdout)}


@pytest.mark.parametrize("env", [{}, VLM], ids=["no VLM", "with a VLM"])
def test_every_interface_lists_what_the_agent_runs(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastapi.testclient import TestClient

    from radpilot.app.api import create_app
    from radpilot.app.mcp_server import build_mcp_server
    from radpilot.assembly import build_agent

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    agent = build_agent(Settings(state_dir=tmp_path / "state"))
    runs = set(agent.context.registry.names())
    assert ("describe_image" in runs) == bool(env)
    with TestClient(create_app(agent.settings, agent=agent, ui=False)) as http:
        rest = {tool["name"] for tool in http.get("/v1/tools").json()["tools"]}
    mcp = asyncio.run(mcp_names(build_mcp_server(agent))) - MCP_SESSION_TOOLS
    assert rest == runs and mcp == runs and cli_names(env) == runs
