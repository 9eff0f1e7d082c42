"""The PACS on every interface: REST routes (mounted only when a PACS is configured), and
the one way a pulled study enters a session, shared by REST, CLI, MCP and the UI.

(No `from __future__ import annotations` here: FastAPI must see the routes' real types.)
"""

from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from radpilot.pacs.client import PacsClient, PacsQuery, PacsStudy
from radpilot.pacs.pull import PULLED_NAME, Ingest, PullRequest, PullResult, pull

# A PACS that is down, slow or refusing radpilot is not the client's mistake: 502/504.
PACS_STATUS = {
    "pacs_unavailable": 502, "pacs_auth": 502, "pacs_error": 502, "pacs_bad_reply": 502,
    "pacs_bad_instance": 502, "pacs_timeout": 504, "pacs_not_found": 404, "bad_prior": 422,
}  # fmt: skip


class PacsStudies(BaseModel):
    studies: list[PacsStudy]


def session_ingest(agent: Any, session_id: str) -> Ingest:
    """Pulled bytes become a study of the session, through the same ingest as an upload."""

    def ingest(data: bytes, role: Literal["current", "prior"]) -> tuple[str, bool]:
        ref = agent.add_study(session_id, data, PULLED_NAME, role=role)
        return ref.study_id, agent.tools.studies.get(ref.study_id).qc.ok

    return ingest


def pacs_router(
    client: PacsClient,
    caller: Callable[..., str],
    owned_session: Callable[[str, str], str],
    agent: Callable[[], Any],
    responses: dict[int | str, dict[str, Any]],
) -> APIRouter:
    """Search and pull, under the API's access rules (key, rate limit, session ownership)."""
    router = APIRouter(prefix="/v1", tags=["pacs"], responses=responses)
    Caller = Annotated[str, Depends(caller)]

    @router.post("/pacs/search", response_model=PacsStudies)
    def find_studies(query: PacsQuery, owner: Caller) -> PacsStudies:
        """CR/DX studies in the PACS by patient id or accession number (exact match),
        optionally within a date range; newest first. A POST, so that patient ids never
        appear in URLs (access logs, proxies, browser history)."""
        return PacsStudies(studies=client.find_studies(query))

    @router.post("/sessions/{session_id}/pacs", status_code=201, response_model=PullResult)
    def pull_study(session_id: str, request: PullRequest, owner: Caller) -> PullResult:
        """Pull a study's frontal radiograph into the session (de-identified like an upload),
        with the patient's most recent earlier CR/DX study as its prior unless another or none
        is asked for."""
        owned_session(owner, session_id)
        return pull(client, request, session_ingest(agent(), session_id))

    return router
