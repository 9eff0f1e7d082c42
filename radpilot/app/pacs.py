"""The PACS on every interface: REST routes (mounted only when a PACS is configured), the
one way a pulled study enters a session, and writing a session's answer back as DICOM,
shared by REST, CLI and MCP.

Write-back needs the original study's UIDs, which de-identification replaced. Only when the
site allows write-back (`RADPILOT_PACS_WRITE_BACK`) does a pull keep them: the original
instance's three UIDs per pseudonymous study, in one owner-only file per session under the
state dir, never logged, deleted with the session. The identified header is read back from
the PACS at write time, never stored.

(No `from __future__ import annotations` here: FastAPI must see the routes' real types.)
"""

import contextlib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from radpilot.core.errors import RadpilotError
from radpilot.pacs.client import PacsClient, PacsError, PacsInstance, PacsQuery, PacsStudy
from radpilot.pacs.pull import PULLED_NAME, Ingest, PullRequest, PullResult, pull
from radpilot.tools.studies import write_atomically

_SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

# A PACS that is down, slow or refusing radpilot is not the client's mistake: 502/504.
PACS_STATUS = {
    "pacs_unavailable": 502, "pacs_auth": 502, "pacs_error": 502, "pacs_bad_reply": 502,
    "pacs_bad_instance": 502, "pacs_timeout": 504, "pacs_not_found": 404, "bad_prior": 422,
    "pacs_rejected": 502, "write_back_disabled": 403, "not_from_pacs": 409,
}  # fmt: skip


class PacsStudies(BaseModel):
    studies: list[PacsStudy]


class WrittenBack(BaseModel):
    study_uid: str = Field(description="The original study the objects were filed under.")
    structured_report_uid: str
    secondary_capture_uids: list[str]


class PacsLinks:
    """Pseudonymous study id -> the original instance's UIDs, per session (write-back only)."""

    def __init__(self, state_dir: Path) -> None:
        self.root = state_dir / "pacs_links"

    def _file(self, session_id: str) -> Path:
        if not _SESSION_ID.match(session_id):
            raise RadpilotError(f"unknown session {session_id!r}", code="unknown_session")
        return self.root / f"{session_id}.json"

    def _read(self, session_id: str) -> dict[str, Any]:
        path = self._file(session_id)
        return dict(json.loads(path.read_text())) if path.exists() else {}

    def record(self, session_id: str, study_id: str, source: PacsInstance) -> None:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        links = {**self._read(session_id), study_id: source.model_dump()}
        write_atomically(self._file(session_id), json.dumps(links).encode())  # mode 0600

    def get(self, session_id: str, study_id: str) -> PacsInstance | None:
        found = self._read(session_id).get(study_id)
        return PacsInstance.model_validate(found) if found else None

    def remove(self, session_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._file(session_id).unlink()


def session_ingest(agent: Any, session_id: str, links: PacsLinks | None = None) -> Ingest:
    """Pulled bytes become a study of the session, through the same ingest as an upload;
    with `links` (write-back allowed), the original UIDs are kept for write-back."""

    def ingest(data: bytes, role: Literal["current", "prior"],
               source: PacsInstance) -> tuple[str, bool]:  # fmt: skip
        ref = agent.add_study(session_id, data, PULLED_NAME, role=role)
        if links is not None:
            links.record(session_id, ref.study_id, source)
        return ref.study_id, agent.tools.studies.get(ref.study_id).qc.ok

    return ingest


def links_for(settings: Any) -> PacsLinks | None:
    return PacsLinks(settings.state_dir) if settings.pacs_write_back else None


def write_back(agent: Any, client: PacsClient, links: PacsLinks | None,
               session_id: str) -> WrittenBack:  # fmt: skip
    """The session's latest answer as an SR, and its overlays as Secondary Captures, stored
    in the original study of the session's current study. The SR goes first and alone: a
    PACS that refuses it has been sent nothing else."""
    import numpy as np
    from PIL import Image
    from pydicom.uid import generate_uid

    from radpilot.agent.report_sr import secondary_capture, structured_report

    if links is None:
        raise PacsError("this site does not write results back to the PACS "
                        "(RADPILOT_PACS_WRITE_BACK is off)",
                        code="write_back_disabled")  # fmt: skip
    state = agent.state(session_id)
    answers = [m.answer for m in state.messages if m.answer is not None and m.answer.claims]
    currents = [s for s in state.studies if s.role == "current"]
    if not answers or not currents:
        raise RadpilotError("no answer about a current study yet; ask a question first",
                            code="no_answer")  # fmt: skip
    source = links.get(session_id, currents[-1].study_id)
    if source is None:
        raise PacsError("the current study was not pulled from the PACS (or was pulled "
                        "before write-back was allowed): there is no study to write back to",
                        code="not_from_pacs")  # fmt: skip
    header = client.header(source)
    answer = answers[-1]
    report = structured_report(answer, header, series_uid=generate_uid(), sop_uid=generate_uid())
    overlays = [a for e in answer.evidence for a in e.artefacts if a.kind == "overlay"]
    series = generate_uid()
    captures = []
    for number, artefact in enumerate(overlays, start=1):
        with Image.open(agent.tools.artefacts.path(artefact)) as image:
            pixels = np.asarray(image.convert("RGB"))
        captures.append(secondary_capture(pixels, header, series_uid=series,
                                          sop_uid=generate_uid(), number=number))  # fmt: skip
    client.store([report], source.study_uid)
    if captures:
        client.store(captures, source.study_uid)
    return WrittenBack(
        study_uid=source.study_uid, structured_report_uid=str(report.SOPInstanceUID),
        secondary_capture_uids=[str(c.SOPInstanceUID) for c in captures],
    )


def pacs_router(
    client: PacsClient,
    links: PacsLinks | None,
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
        return pull(client, request, session_ingest(agent(), session_id, links))

    @router.post("/sessions/{session_id}/pacs/results", status_code=201,
                 response_model=WrittenBack)  # fmt: skip
    def write_results(session_id: str, owner: Caller) -> WrittenBack:
        """Write the latest answer back to the PACS (only where the site allows it): a DICOM
        Comprehensive SR with every statement, its evidence and the decision-support notice,
        and the overlays as Secondary Captures, in the original study."""
        return write_back(agent(), client, links, owned_session(owner, session_id))

    return router
