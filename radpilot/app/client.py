"""Python clients of the REST API (httpx): `Client` (sync) and `AsyncClient`.

from radpilot.app.client import Client
with Client("http://127.0.0.1:8000", api_key=None) as rp:
    session = rp.create_session()
    rp.upload_study(session, "cxr.png")
    answer = rp.ask(session, "Is there a pleural effusion?")
    for claim in answer.claims:
        print(claim.text, claim.evidence)
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from datetime import date
from pathlib import Path
from typing import Any, Literal

import httpx

from radpilot.agent.types import Answer, TraceEvent
from radpilot.app.schemas import SessionView, StudyUploaded


class ApiClientError(Exception):
    """A 4xx/5xx from the server, with its `{error: {code, message}}`."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


def _check(response: httpx.Response) -> httpx.Response:
    if response.status_code >= 400:
        try:
            error = response.json()["error"]
            code, message = error["code"], error["message"]
        except (ValueError, KeyError, TypeError):
            code, message = "http_error", response.text[:200]
        raise ApiClientError(response.status_code, code, message)
    return response


def _upload(file: str | Path | bytes, role: str, acquired: date | None) -> dict[str, Any]:
    if isinstance(file, bytes):
        name, data = "upload", file
    else:
        name, data = Path(file).name, Path(file).read_bytes()
    form = {"role": role, **({"acquired": acquired.isoformat()} if acquired else {})}
    return {"files": {"file": (name, data)}, "data": form}


def _sse_events(lines: Iterator[str]) -> Iterator[TraceEvent]:
    kind = None
    for line in lines:
        if line.startswith("event: "):
            kind = line.removeprefix("event: ")
        elif line.startswith("data: ") and kind is not None:
            yield TraceEvent(kind=kind, data=json.loads(line.removeprefix("data: ")))  # type: ignore[arg-type]
            kind = None


class Client:
    def __init__(self, base_url: str, *, api_key: str | None = None, timeout: float = 300) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    def ready(self) -> bool:
        return self.http.get("/readyz").status_code == 200

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.ready():
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"server not ready within {timeout:.0f} s")

    def tools(self) -> list[dict[str, Any]]:
        tools: list[dict[str, Any]] = _check(self.http.get("/v1/tools")).json()["tools"]
        return tools

    def create_session(self) -> str:
        return str(_check(self.http.post("/v1/sessions")).json()["session_id"])

    def session(self, session_id: str) -> SessionView:
        return SessionView.model_validate(
            _check(self.http.get(f"/v1/sessions/{session_id}")).json()
        )

    def delete_session(self, session_id: str) -> None:
        _check(self.http.delete(f"/v1/sessions/{session_id}"))

    def upload_study(self, session_id: str, file: str | Path | bytes, *,
                     role: Literal["current", "prior"] = "current",
                     acquired: date | None = None) -> StudyUploaded:  # fmt: skip
        reply = self.http.post(
            f"/v1/sessions/{session_id}/studies", **_upload(file, role, acquired)
        )
        return StudyUploaded.model_validate(_check(reply).json())

    def ask(self, session_id: str, text: str) -> Answer:
        body = {"text": text}
        reply = self.http.post(f"/v1/sessions/{session_id}/messages", json=body)
        return Answer.model_validate(_check(reply).json())

    def stream(self, session_id: str, text: str) -> Iterator[TraceEvent]:
        with self.http.stream("POST", f"/v1/sessions/{session_id}/messages", json={"text": text},
                              headers={"Accept": "text/event-stream"}) as reply:  # fmt: skip
            if reply.status_code >= 400:
                reply.read()
                _check(reply)
            yield from _sse_events(reply.iter_lines())

    def report(self, session_id: str, format: Literal["md", "json", "fhir"] = "md") -> str:
        reply = self.http.get(f"/v1/sessions/{session_id}/report", params={"format": format})
        return _check(reply).text

    def artefact(self, artefact_id: str) -> bytes:
        return _check(self.http.get(f"/v1/artefacts/{artefact_id}")).content


class AsyncClient:
    """The same API for asyncio code."""

    def __init__(self, base_url: str, *, api_key: str | None = None, timeout: float = 300) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.AsyncClient(base_url=base_url, headers=headers, timeout=timeout)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()

    async def create_session(self) -> str:
        return str(_check(await self.http.post("/v1/sessions")).json()["session_id"])

    async def upload_study(self, session_id: str, file: str | Path | bytes, *,
                           role: Literal["current", "prior"] = "current",
                           acquired: date | None = None) -> StudyUploaded:  # fmt: skip
        reply = await self.http.post(f"/v1/sessions/{session_id}/studies",
                                     **_upload(file, role, acquired))  # fmt: skip
        return StudyUploaded.model_validate(_check(reply).json())

    async def ask(self, session_id: str, text: str) -> Answer:
        reply = await self.http.post(f"/v1/sessions/{session_id}/messages", json={"text": text})
        return Answer.model_validate(_check(reply).json())

    async def stream(self, session_id: str, text: str) -> AsyncIterator[TraceEvent]:
        async with self.http.stream("POST", f"/v1/sessions/{session_id}/messages",
                                    json={"text": text},
                                    headers={"Accept": "text/event-stream"}) as reply:  # fmt: skip
            if reply.status_code >= 400:
                await reply.aread()
                _check(reply)
            lines = [line async for line in reply.aiter_lines()]
        for event in _sse_events(iter(lines)):
            yield event
