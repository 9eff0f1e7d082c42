"""The REST API (FastAPI, `/v1`): sessions, studies, messages (JSON or SSE), reports,
artefacts, tools, health, readiness and Prometheus metrics.

Every client mistake is a 4xx with `{error: {code, message}}`; a tool failure inside a turn is
a limitation of the answer, never a 5xx. The agent loads in the background so the server
answers at once; `/readyz` says when it can take questions.

(No `from __future__ import annotations` here: FastAPI must see the real `Annotated`
dependency types of the routes, which are defined inside `create_app`.)
"""

import json
import threading
import time
from collections.abc import Iterator
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, File, Form, Header, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.routing import APIRoute
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from radpilot import __version__
from radpilot.agent.types import Answer
from radpilot.app.access import DEFAULT_REQUESTS_PER_MINUTE, open_access
from radpilot.app.pacs import PACS_STATUS, links_for, pacs_router
from radpilot.app.schemas import (
    ErrorBody,
    Health,
    MessageRequest,
    Readiness,
    SessionCreated,
    SessionView,
    StudyUploaded,
    ToolsList,
)
from radpilot.app.ui import UiFiles
from radpilot.assembly import build_registry
from radpilot.core.errors import RadpilotError
from radpilot.core.notice import DECISION_SUPPORT
from radpilot.pacs.client import PacsClient
from radpilot.settings import Settings
from radpilot.tools.registry import ToolRegistry

STATUS_BY_CODE = {
    "unknown_session": 404, "unknown_study": 404, "unknown_artefact": 404, "not_found": 404,
    "image_too_large": 413, "upload_too_large": 413, "unauthorized": 401,
    "rate_limited": 429, "starting": 503, "no_answer": 409, **PACS_STATUS,
}  # fmt: skip
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (400, 401, 404, 405, 409, 413, 422, 429, 503)
}


class ApiError(RadpilotError):
    pass


def _error(status: int, code: str, message: str) -> JSONResponse:
    body = ErrorBody.model_validate({"error": {"code": code, "message": message}})
    return JSONResponse(status_code=status, content=body.model_dump())


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("radpilot_requests_total", "HTTP requests",
                                ["method", "route", "status"], registry=self.registry)  # fmt: skip
        self.latency = Histogram("radpilot_request_seconds", "HTTP request latency",
                                 ["route"], registry=self.registry)  # fmt: skip
        self.tool_seconds = Histogram("radpilot_tool_seconds", "Tool compute time",
                                      ["tool"], registry=self.registry)  # fmt: skip
        self.errors = Counter("radpilot_errors_total", "Error responses by code",
                              ["code"], registry=self.registry)  # fmt: skip


class AgentHolder:
    """Loads the agent in a background thread; routes wait for nothing."""

    def __init__(self, settings: Settings, registry: ToolRegistry, agent: Any = None) -> None:
        self.settings = settings
        self.registry = registry
        self.agent = agent
        self.failure: str | None = None
        if agent is None:
            threading.Thread(target=self._load, name="agent-loader", daemon=True).start()

    def _load(self) -> None:
        try:
            from radpilot.assembly import build_agent

            self.agent = build_agent(self.settings, registry=self.registry)
            self.agent.tools.models.findings_model()  # load the classifier now, not on turn 1
        except Exception as error:  # reported by /readyz, never raised into a request
            self.failure = f"{type(error).__name__}: {error}"

    def get(self) -> Any:
        if self.agent is None:
            raise ApiError("radpilot is starting; retry shortly (see /readyz)", code="starting")
        return self.agent


def create_app(
    settings: Settings,
    *,
    agent: Any = None,
    upload_limit_mb: float = 50.0,
    requests_per_minute: int = DEFAULT_REQUESTS_PER_MINUTE,
    ui: bool = True,
) -> FastAPI:
    app = FastAPI(
        title="radpilot",
        version=__version__,
        description="Evidence-grounded assistant for chest radiographs. " + DECISION_SUPPORT,
    )
    # Before the agent starts loading: an unreachable owner database fails start-up at once.
    # The owner store is in PostgreSQL with the sessions, when they are there.
    access = open_access(settings, requests_per_minute)
    # Tool specs never change while the server runs: built once, not per request, and
    # from the registry the agent runs, so the list names what a turn can actually use.
    registry = agent.context.registry if agent is not None else build_registry(settings)
    tool_specs = ToolsList(tools=[s.model_dump(mode="json") for s in registry.specs()])
    holder = AgentHolder(settings, registry, agent)
    metrics = Metrics()
    upload_limit = int(upload_limit_mb * 1024 * 1024)

    @app.exception_handler(RadpilotError)
    def _radpilot_error(request: Request, error: RadpilotError) -> JSONResponse:
        metrics.errors.labels(error.code).inc()
        return _error(STATUS_BY_CODE.get(error.code, 400), error.code, error.message)

    @app.exception_handler(RequestValidationError)
    def _validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in item['loc'])}: {item['msg']}" for item in error.errors()
        )
        metrics.errors.labels("invalid_request").inc()
        return _error(422, "invalid_request", problems or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    def _http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
        metrics.errors.labels(code).inc()
        return _error(error.status_code, code, str(error.detail))

    @app.exception_handler(Exception)
    def _unexpected(request: Request, error: Exception) -> JSONResponse:
        metrics.errors.labels("internal_error").inc()
        return _error(500, "internal_error", "internal error; it has been logged")

    @app.middleware("http")
    async def _measure(request: Request, call_next: Any) -> Response:
        started = time.perf_counter()
        response: Response = await call_next(request)
        route = getattr(request.scope.get("route"), "path", "unmatched")
        metrics.requests.labels(request.method, route, str(response.status_code)).inc()
        metrics.latency.labels(route).observe(time.perf_counter() - started)
        return response

    @app.middleware("http")
    async def _method_not_allowed(request: Request, call_next: Any) -> Response:
        """405 with `Allow` for a documented path asked with a method it does not have (the
        UI mounted at `/` would otherwise answer 404). Only a 404 or 405 is looked at again,
        so answered requests pay nothing for it."""
        response: Response = await call_next(request)
        if response.status_code not in (404, 405):
            return response
        allowed = set()
        for route in app.routes:
            if isinstance(route, APIRoute) and route.include_in_schema:
                match, _ = route.matches(request.scope)
                if match is Match.FULL:
                    return response  # a route's own 404 (an unknown id, say)
                if match is Match.PARTIAL:
                    allowed |= route.methods or set()
        if not allowed:
            return response
        response = _error(405, "method_not_allowed",
                          f"{request.method} is not allowed here; use {', '.join(sorted(allowed))}")
        response.headers["Allow"] = ", ".join(sorted(allowed))
        return response

    def caller(authorization: Annotated[str | None, Header()] = None) -> str:
        return access.caller(authorization)

    Caller = Annotated[str, Depends(caller)]
    owned_session = access.session
    ui_files = UiFiles() if ui else None
    # The original UIDs of pulled studies, kept only where write-back is allowed.
    pacs_links = links_for(settings)
    pacs_client = PacsClient.from_settings(settings) if settings.dicomweb_url else None

    def forget(session_id: str) -> None:
        """Delete the session everywhere: the agent's state and files, the UI's downloads,
        then its ownership (last, so that a failure leaves it deletable by its owner)."""
        holder.get().delete_session(session_id)
        if ui_files is not None:
            ui_files.remove(session_id)
        if pacs_links is not None:
            pacs_links.remove(session_id)
        access.owners.remove_session(session_id)

    @app.get("/healthz", response_model=Health)
    def healthz() -> Health:
        return Health()

    @app.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
    def readyz() -> Any:
        if holder.agent is not None:
            return Readiness(ready=True, detail="models loaded")
        detail = holder.failure or "loading models"
        return JSONResponse(
            status_code=503, content=Readiness(ready=False, detail=detail).model_dump()
        )

    @app.get("/metrics", include_in_schema=False)
    def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/tools", response_model=ToolsList, responses=ERROR_RESPONSES)
    def tools(owner: Caller) -> ToolsList:
        return tool_specs

    @app.post("/v1/sessions", status_code=201, response_model=SessionCreated,
              responses=ERROR_RESPONSES)  # fmt: skip
    def create_session(owner: Caller) -> SessionCreated:
        return SessionCreated(session_id=access.new_session(owner, holder.get().new_session()))

    @app.get("/v1/sessions/{session_id}", response_model=SessionView, responses=ERROR_RESPONSES)
    def get_session(session_id: str, owner: Caller) -> SessionView:
        record = holder.get().session(owned_session(owner, session_id))
        return SessionView(session_id=session_id, messages=record.messages,
                           studies=record.studies, evidence=record.evidence)  # fmt: skip

    @app.delete("/v1/sessions/{session_id}", status_code=204, responses=ERROR_RESPONSES)
    def delete_session(session_id: str, owner: Caller) -> Response:
        forget(owned_session(owner, session_id))
        return Response(status_code=204)

    @app.post("/v1/sessions/{session_id}/studies", status_code=201,
              response_model=StudyUploaded, responses=ERROR_RESPONSES)  # fmt: skip
    def upload_study(
        session_id: str,
        owner: Caller,
        file: Annotated[UploadFile, File(description="PNG, JPEG or DICOM (not empty)",
                                         json_schema_extra={"minLength": 1})],
        role: Annotated[Literal["current", "prior"], Form()] = "current",
        # Omitted when unknown (a form field cannot be null): the file's own date is used.
        acquired: Annotated[date, Form(description="When the study was acquired, YYYY-MM-DD; "
                                       "for a prior whose file carries no date")] = None,  # type: ignore[assignment]  # fmt: skip
    ) -> StudyUploaded:
        owned_session(owner, session_id)
        data = file.file.read(upload_limit + 1)
        if len(data) > upload_limit:
            raise ApiError(f"upload over the {upload_limit_mb:g} MB limit",
                           code="upload_too_large")  # fmt: skip
        agent = holder.get()
        ref = agent.add_study(session_id, data, file.filename or "", role=role, acquired=acquired)
        study = agent.tools.studies.get(ref.study_id)
        return StudyUploaded(study_id=ref.study_id, role=ref.role, qc_ok=study.qc.ok,
                             qc=study.qc.issues)  # fmt: skip

    streamed: dict[int | str, dict[str, Any]] = {200: {"content": {"text/event-stream": {}}}}

    @app.post("/v1/sessions/{session_id}/messages", response_model=Answer,
              responses={**ERROR_RESPONSES, **streamed})  # fmt: skip
    def post_message(
        session_id: str,
        body: MessageRequest,
        owner: Caller,
        accept: Annotated[str | None, Header()] = None,
    ) -> Any:
        agent = holder.get()
        events = agent.stream(owned_session(owner, session_id), body.text)
        if accept and "text/event-stream" in accept:
            first = next(events)  # validation errors surface before the stream starts
            return StreamingResponse(sse(first, events, session_id),
                                     media_type="text/event-stream")  # fmt: skip
        for event in events:
            record_turn(event, session_id)
        answer = agent.state(session_id).answer
        return answer

    def record_turn(event: Any, session_id: str) -> None:
        if event.kind == "tool_end" and event.data.get("ok") and not event.data.get("reused"):
            metrics.tool_seconds.labels(event.data["tool"]).observe(
                event.data.get("elapsed_ms", 0.0) / 1000
            )
        access.record_artefacts(session_id, event)

    def sse(first: Any, events: Iterator[Any], session_id: str) -> Iterator[str]:
        for event in _chain(first, events):
            record_turn(event, session_id)
            yield f"event: {event.kind}\ndata: {json.dumps(event.data)}\n\n"

    reports: dict[int | str, dict[str, Any]] = {200: {
        "description": "The latest answer as a report: Markdown (`md`), the Answer JSON "
        "(`json`) or a FHIR R4 DiagnosticReport (`fhir`)",
        "content": {"text/markdown": {"schema": {"type": "string"}},
                    "application/json": {"schema": {"$ref": "#/components/schemas/Answer"}},
                    "application/fhir+json": {"schema": {"type": "object"}}},
    }}  # fmt: skip

    @app.get("/v1/sessions/{session_id}/report", responses={**ERROR_RESPONSES, **reports})
    def report(
        session_id: str,
        owner: Caller,
        format: Annotated[Literal["md", "json", "fhir"], Query()] = "md",
    ) -> Response:
        from radpilot.agent.report import render_markdown, to_fhir

        state = holder.get().state(owned_session(owner, session_id))
        answers = [m.answer for m in state.messages if m.answer is not None]
        if not answers:
            raise ApiError("no answer in this session yet; ask a question first",
                           code="no_answer")  # fmt: skip
        answer = answers[-1]
        if format == "md":
            return Response(render_markdown(answer), media_type="text/markdown")
        if format == "json":
            return JSONResponse(answer.model_dump(mode="json"))
        return JSONResponse(to_fhir(answer, state.studies), media_type="application/fhir+json")

    @app.get("/v1/artefacts/{artefact_id}", responses=ERROR_RESPONSES,
             response_class=FileResponse)  # fmt: skip
    def artefact(artefact_id: str, owner: Caller) -> FileResponse:
        access.artefact(owner, artefact_id)
        from radpilot.core.contracts import Artefact

        path = holder.get().tools.artefacts.path(
            Artefact(id=artefact_id, kind="overlay", path=f"{artefact_id}.png")
        )
        return FileResponse(path, media_type="image/png")

    if pacs_client is not None:
        gateway: dict[int | str, dict[str, Any]] = {502: {"model": ErrorBody},
                                                    504: {"model": ErrorBody}}  # fmt: skip
        pacs_errors = {**ERROR_RESPONSES, **gateway}
        app.include_router(pacs_router(pacs_client, pacs_links, caller,
                                       owned_session, holder.get, pacs_errors))  # fmt: skip

    # Registered last: unknown /v1 paths get the API's JSON 404, not the UI's.
    @app.api_route("/v1/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                   include_in_schema=False)  # fmt: skip
    def unknown_route(path: str) -> None:
        raise ApiError(f"no route /v1/{path}", code="not_found")

    if ui:
        import gradio as gr

        from radpilot.app.ui import build_ui

        examples = settings.data / "nih" / "images" if settings.data else None
        assert ui_files is not None
        pacs_ui = (pacs_client, pacs_links) if pacs_client is not None else None
        blocks = build_ui(holder, access, ui_files, forget, examples, pacs_ui)
        # Never the state dir: Gradio serves every file under an allowed path to anyone.
        allowed = [str(examples)] if examples else []
        app = gr.mount_gradio_app(app, blocks, path="/", allowed_paths=allowed)
    return app


def _chain(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    yield first
    yield from rest
