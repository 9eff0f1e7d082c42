"""`radpilot mcp`: radpilot for other agents over the Model Context Protocol.

Exposes `new_session`, `add_study`, `ask` (the whole agent, cited Answer JSON) and every
registered expert tool under its own name and input schema. Runs over stdio or streamable
HTTP with the official `mcp` SDK. Answers remain decision support, not a diagnosis.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any, Literal

from radpilot.errors import RadpilotError


def build_mcp_server(agent: Any) -> Any:
    from mcp.server.mcpserver import MCPServer

    server = MCPServer(
        name="radpilot",
        instructions="Chest radiograph assistant: create a session, add a study (a file path "
        "on this machine or base64 bytes), then ask questions; every claim cites evidence. "
        "Decision support, not a diagnosis.",
    )

    @server.tool(description="Start a conversation; returns its session id.")
    def new_session() -> str:
        return str(agent.new_session())

    @server.tool(
        description="Add a PNG, JPEG or DICOM study to a session (de-identified on ingest). "
        "Give `path` (a file on the server's machine) or `image_base64`."
    )
    def add_study(
        session_id: str,
        path: str | None = None,
        image_base64: str | None = None,
        role: Literal["current", "prior"] = "current",
    ) -> dict[str, Any]:
        data = _image_bytes(path, image_base64)
        ref = agent.add_study(session_id, data, Path(path).name if path else "", role=role)
        study = agent.tools.studies.get(ref.study_id)
        return {"study_id": ref.study_id, "qc_ok": study.qc.ok,
                "qc": [issue.model_dump() for issue in study.qc.issues]}  # fmt: skip

    @server.tool(description="Ask a question about the session's studies; returns the Answer "
                 "(claims with evidence ids, evidence, findings, limitations).")  # fmt: skip
    def ask(session_id: str, question: str) -> dict[str, Any]:
        answer: dict[str, Any] = agent.ask(session_id, question).model_dump(mode="json")
        return answer

    for spec in agent.runtime.registry.specs():
        _expose_tool(server, agent, spec.name, spec.description)
    return server


def _image_bytes(path: str | None, image_base64: str | None) -> bytes:
    if (path is None) == (image_base64 is None):
        raise RadpilotError("give exactly one of `path` or `image_base64`")
    if image_base64 is not None:
        try:
            return base64.b64decode(image_base64, validate=True)
        except ValueError:
            raise RadpilotError("image_base64 is not valid base64") from None
    try:
        return Path(str(path)).read_bytes()
    except OSError as error:
        raise RadpilotError(f"cannot read {path}: {error.strerror}") from None


def _expose_tool(server: Any, agent: Any, name: str, description: str) -> None:
    """Register one registry tool under its own name, validated by its own Input model."""
    tool = agent.runtime.registry.get(name)

    def run(arguments: Any) -> dict[str, Any]:
        result = agent.runtime.registry.run(name, arguments.model_dump(), agent.tools)
        data: dict[str, Any] = result.model_dump(mode="json")
        return data

    run.__annotations__ = {"arguments": tool.Input, "return": dict[str, Any]}
    run.__name__ = name
    server.tool(name=name, description=description)(run)


def serve_mcp(transport: Literal["stdio", "http"], host: str, port: int) -> None:
    from radpilot.agent.service import Agent
    from radpilot.settings import Settings

    server = build_mcp_server(Agent(Settings()))
    if transport == "stdio":
        server.run("stdio")
    else:
        server.run("streamable-http", host=host, port=port)
