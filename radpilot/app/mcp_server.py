"""`radpilot mcp`: radpilot for other agents over the Model Context Protocol.

Exposes `new_session`, `add_study`, `ask` (the whole agent, cited Answer JSON) and every
registered expert tool under its own name and input schema. Runs over stdio or streamable
HTTP with the official `mcp` SDK. Answers remain decision support, not a diagnosis.

Every expert tool runs inside a session, on that session's studies only, through the same
check the agent's executor uses (`ToolRegistry.validate_call`). `add_study` reads a file by
`path` only under the import folder (`RADPILOT_IMPORT_DIR`); without one, only a local stdio
client may name files. A refusal is a tool error whose text is the REST API's error body,
`{"error": {"code", "message"}}`, never a bare "Error executing tool".
"""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

from mcp.server.mcpserver import Context

from radpilot.app.access import AccessPolicy, open_access
from radpilot.app.ownership import LOCAL_OWNER
from radpilot.core.errors import RadpilotError
from radpilot.core.notice import DECISION_SUPPORT
from radpilot.pacs.client import PacsQuery  # resolved by the SDK from the tools' annotations
from radpilot.pacs.pull import PullRequest

Function = TypeVar("Function", bound=Callable[..., Any])


def refusals_as_errors(function: Function) -> Function:
    """A client's mistake (a `RadpilotError`) becomes an MCP tool error carrying its code and
    message; anything else stays a crash, whose text the SDK keeps on the server."""
    from mcp.server.mcpserver.exceptions import ToolError

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except RadpilotError as error:
            body = {"error": {"code": error.code, "message": error.message}}
            raise ToolError(json.dumps(body)) from None

    return wrapper  # type: ignore[return-value]


class Access:
    """The interfaces' access policy (`radpilot.app.access`) over MCP: over HTTP with keys
    configured, a call needs `Authorization: Bearer <key>` and counts against the key's rate
    limit; a session belongs to the key that created it, and other keys get "unknown session".
    Over stdio (no headers) the caller is the local user."""

    def __init__(self, policy: AccessPolicy) -> None:
        self.policy = policy

    def caller(self, ctx: Context) -> str:
        headers = ctx.headers
        if headers is None:
            return LOCAL_OWNER
        return self.policy.caller(headers.get("authorization"))

    def session(self, ctx: Context, session_id: str) -> str:
        return self.policy.session(self.caller(ctx), session_id)


def build_mcp_server(agent: Any, *, paths_allowed: bool = True) -> Any:
    """The MCP server over `agent`. `paths_allowed`: whether `add_study` may read a `path`
    anywhere when no import folder is set (a local stdio client: its own files)."""
    from mcp.server.mcpserver import MCPServer

    server = MCPServer(
        name="radpilot",
        instructions="Chest radiograph assistant: create a session, add a study (a file path "
        "on this machine or base64 bytes), then ask questions; every claim cites evidence. "
        + DECISION_SUPPORT,
    )

    settings = agent.settings
    access = Access(open_access(settings))

    @server.tool(description="Start a conversation; returns its session id.")
    @refusals_as_errors
    def new_session(ctx: Context) -> str:
        return access.policy.new_session(access.caller(ctx), str(agent.new_session()))

    @server.tool(
        description="Add a PNG, JPEG or DICOM study to a session (de-identified on ingest). "
        "Give `image_base64`, or `path`: a file in the server's import folder."
    )
    @refusals_as_errors
    def add_study(
        session_id: str,
        ctx: Context,
        path: str | None = None,
        image_base64: str | None = None,
        role: Literal["current", "prior"] = "current",
    ) -> dict[str, Any]:
        access.session(ctx, session_id)
        limit = int(settings.upload_limit_mb * 1024 * 1024)
        import_dir = settings.import_dir
        data = _image_bytes(path, image_base64, limit, import_dir, paths_allowed)
        ref = agent.add_study(session_id, data, Path(path).name if path else "", role=role)
        study = agent.tools.studies.get(ref.study_id)
        return {"study_id": ref.study_id, "qc_ok": study.qc.ok,
                "qc": [issue.model_dump() for issue in study.qc.issues]}  # fmt: skip

    @server.tool(description="Ask a question about the session's studies; returns the Answer "
                 "(claims with evidence ids, evidence, findings, limitations).")  # fmt: skip
    @refusals_as_errors
    def ask(session_id: str, question: str, ctx: Context) -> dict[str, Any]:
        access.session(ctx, session_id)
        answer: dict[str, Any] = agent.ask(session_id, question).model_dump(mode="json")
        return answer

    for spec in agent.context.registry.specs():
        _expose_tool(server, agent, access, spec.name, spec.description)
    if settings.dicomweb_url is not None:
        _expose_pacs(server, agent, access)
    return server


def _expose_pacs(server: Any, agent: Any, access: Access) -> None:
    """`find_studies` and `pull_study`: the PACS (RADPILOT_DICOMWEB_URL) under the same rules
    as REST: a key, its rate limit, and a session the caller owns."""
    from radpilot.app.pacs import links_for, session_ingest, write_back
    from radpilot.pacs.client import PacsClient
    from radpilot.pacs.pull import pull

    client = PacsClient.from_settings(agent.settings)
    links = links_for(agent.settings)

    @server.tool(description="Search the PACS for CR/DX studies by exact patient id or "
                 "accession number, optionally within study dates; newest first.")  # fmt: skip
    @refusals_as_errors
    def find_studies(query: PacsQuery, ctx: Context) -> dict[str, Any]:
        access.caller(ctx)
        return {"studies": [s.model_dump(mode="json") for s in client.find_studies(query)]}

    @server.tool(description="Pull a PACS study's frontal radiograph into a session "
                 "(de-identified on ingest) with the patient's most recent earlier CR/DX "
                 "study as its prior; prior: 'auto', 'none' or a StudyInstanceUID.")  # fmt: skip
    @refusals_as_errors
    def pull_study(session_id: str, request: PullRequest, ctx: Context) -> dict[str, Any]:
        access.session(ctx, session_id)
        result = pull(client, request, session_ingest(agent, session_id, links))
        return result.model_dump(mode="json")

    @server.tool(description="Write the session's latest answer back to the PACS as a DICOM "
                 "SR (its overlays as Secondary Captures), where the site allows it.")  # fmt: skip
    @refusals_as_errors
    def write_results(session_id: str, ctx: Context) -> dict[str, Any]:
        written = write_back(agent, client, links, access.session(ctx, session_id))
        return written.model_dump(mode="json")


def _image_bytes(
    path: str | None, image_base64: str | None, limit: int, import_dir: Path | None,
    paths_allowed: bool,
) -> bytes:  # fmt: skip
    if (path is None) == (image_base64 is None):
        raise RadpilotError("give exactly one of `path` or `image_base64`", code="bad_request")
    if image_base64 is not None:
        if len(image_base64) > limit * 4 // 3 + 4:
            raise RadpilotError(f"image over the {limit / 2**20:g} MB limit",
                                code="upload_too_large")  # fmt: skip
        try:
            return base64.b64decode(image_base64, validate=True)
        except ValueError:
            raise RadpilotError("image_base64 is not valid base64", code="bad_request") from None
    return _read_importable(Path(str(path)), limit, import_dir, paths_allowed)


def _read_importable(path: Path, limit: int, import_dir: Path | None, anywhere: bool) -> bytes:
    """The file's bytes if the caller may read it: under the import folder, or anywhere for a
    local client without one. The refusal is the same whether or not the file exists."""
    resolved = path.expanduser().resolve()
    if import_dir is not None:
        allowed = resolved.is_relative_to(import_dir.expanduser().resolve())
    else:
        allowed = anywhere
    if not allowed:
        rule = (
            "reads studies by path only from its import folder (RADPILOT_IMPORT_DIR)"
            if import_dir
            else "reads no study by path (no RADPILOT_IMPORT_DIR is set)"
        )
        raise RadpilotError(
            f"this server {rule}; send the file as image_base64 instead", code="path_not_allowed"
        )
    try:
        if resolved.stat().st_size > limit:
            raise RadpilotError(f"file over the {limit / 2**20:g} MB limit",
                                code="upload_too_large")  # fmt: skip
        return resolved.read_bytes()
    except OSError as error:
        raise RadpilotError(f"cannot read {path}: {error.strerror}", code="unreadable") from None


def _expose_tool(server: Any, agent: Any, access: Access, name: str, description: str) -> None:
    """Register one registry tool under its own name: it runs in a session, on that
    session's studies, with the arguments validated by the tool's own Input model."""
    tool = agent.context.registry.get(name)

    def run(session_id: str, arguments: Any, ctx: Context) -> dict[str, Any]:
        access.session(ctx, session_id)
        studies = {s.study_id for s in agent.state(session_id).studies}
        registry = agent.context.registry
        # `arguments` is already the tool's Input (the SDK validated it against its schema).
        inputs = registry.validate_call(name, arguments, studies)
        data: dict[str, Any] = registry.run(name, inputs, agent.tools).model_dump(mode="json")
        return data

    run.__annotations__ = {"session_id": str, "arguments": tool.Input, "ctx": Context,
                           "return": dict[str, Any]}  # fmt: skip
    run.__name__ = name
    described = f"{description} Runs on the session's studies only."
    server.tool(name=name, description=described)(refusals_as_errors(run))


def serve_mcp(transport: Literal["stdio", "http"], host: str, port: int) -> None:
    from radpilot.assembly import build_agent
    from radpilot.settings import Settings

    server = build_mcp_server(build_agent(Settings()), paths_allowed=transport == "stdio")
    if transport == "stdio":
        server.run("stdio")
    else:
        server.run("streamable-http", host=host, port=port)
