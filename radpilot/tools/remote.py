"""Imaging tools on a tool service (e.g. Ray Serve replicas on GPUs), through the same registry.

With `RADPILOT_TOOLS_URL` set, `radpilot.assembly.build_registry` returns a
`RemoteToolRegistry`: the same tools, schemas and validation, but the imaging tools' `run`
is a POST to the service, which runs the very same `ToolRegistry.run` there
(`create_tool_service`). One code path, local or remote. Studies and artefacts live in the
shared state volume that the API and the tool workers both mount (`RADPILOT_STATE_DIR`), so
a call carries only the tool name and its validated arguments (study ids, never pixels or
identities).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

import httpx
from pydantic import ValidationError

from radpilot.core.contracts import ToolError, ToolResult
from radpilot.tools.base import Tool, ToolContext, ToolInput
from radpilot.tools.registry import ToolRegistry

log = logging.getLogger(__name__)


class RemoteToolRegistry(ToolRegistry):
    def __init__(
        self,
        tools: Iterable[Tool[Any, Any]],
        url: str,
        *,
        timeout_s: float = 300.0,
        http: httpx.Client | None = None,
    ) -> None:
        super().__init__(tools)
        self.url = url.rstrip("/")
        self._http = http or httpx.Client(base_url=self.url + "/", timeout=timeout_s)

    def run(
        self, name: str, arguments: Mapping[str, Any] | ToolInput, ctx: ToolContext
    ) -> ToolResult:
        tool = self.get(name)
        if not tool.on_tool_service:
            return super().run(name, arguments, ctx)
        inputs = self.validate(name, arguments).model_dump(mode="json")  # same errors as local
        started = time.perf_counter()
        try:
            reply = self._http.post(f"run/{name}", json=inputs)
            if reply.status_code >= 400:
                raise httpx.HTTPStatusError(f"HTTP {reply.status_code}", request=reply.request,
                                            response=reply)  # fmt: skip
            return ToolResult.model_validate(reply.json())
        except (httpx.HTTPError, ValueError, ValidationError) as error:
            log.warning("tool service call %s failed: %s", name, type(error).__name__)
            return ToolResult(
                tool=name, ok=False, inputs=inputs, evidence_kind=tool.evidence_kind,
                error=ToolError(code="tool_service_unavailable",
                                message=f"the tool service at {self.url} did not run {name}"),
                elapsed_ms=(time.perf_counter() - started) * 1000.0,
            )  # fmt: skip


def create_tool_service(registry: ToolRegistry, ctx: ToolContext) -> Any:
    """The tool service's HTTP app: `POST /run/{tool}` with the validated arguments returns the
    `ToolResult`; `GET /tools` lists what it serves. Ray Serve mounts it with `serve.ingress`."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    from radpilot.core.errors import RadpilotError

    app = FastAPI(title="radpilot tool service", docs_url=None, redoc_url=None)

    @app.get("/tools")
    def tools() -> list[str]:
        return [name for name in registry.names() if registry.get(name).on_tool_service]

    @app.post("/run/{name}")
    def run(name: str, arguments: dict[str, Any]) -> Any:
        if name not in registry.names() or not registry.get(name).on_tool_service:
            return JSONResponse({"error": f"{name} is not served here"}, status_code=404)
        try:
            return registry.run(name, arguments, ctx).model_dump(mode="json")
        except RadpilotError as error:  # unknown tool or bad arguments: the caller's mistake
            return JSONResponse({"error": error.message}, status_code=422)

    return app
