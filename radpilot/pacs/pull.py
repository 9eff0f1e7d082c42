"""Pull a PACS study, and the prior it is compared with, into a session.

Everything is fetched before anything is ingested, so a PACS that fails half-way leaves the
session as it was. Ingest is the session's own (`add_study`): de-identified exactly like an
upload, so the session keeps pseudonymous ids and shifted dates only. The prior is the same
patient's most recent earlier CR/DX study unless the caller picks another or none; with no
earlier study in the PACS there is no prior, and the answer says so rather than inventing one.
"""

from __future__ import annotations

from typing import Literal, Protocol

from pydantic import BaseModel, Field, field_validator

from radpilot.pacs.client import UID, PacsClient, PacsError, PacsInstance, PacsStudy

# The name a pulled file is ingested under: never a UID or anything else from the PACS.
PULLED_NAME = "pacs-study.dcm"


class PullRequest(BaseModel):
    study_uid: str = Field(min_length=1, max_length=64, description="The study to read.")
    prior: str = Field(
        default="auto", max_length=64,
        description="'auto': the patient's most recent earlier CR/DX study in the PACS; "
        "'none': no prior; or the StudyInstanceUID of the prior to compare with.",
    )  # fmt: skip

    @field_validator("study_uid")
    @classmethod
    def _uid(cls, value: str) -> str:
        if not UID.match(value):
            raise ValueError("a StudyInstanceUID is digits and dots")
        return value

    @field_validator("prior")
    @classmethod
    def _prior(cls, value: str) -> str:
        if value not in ("auto", "none") and not UID.match(value):
            raise ValueError("'auto', 'none' or a StudyInstanceUID (digits and dots)")
        return value


class PulledStudy(BaseModel):
    """A study as the session now holds it (pseudonymous id, shifted date) and the PACS date
    it came from (shown to the user who pulled it, never stored in the session)."""

    study_id: str
    role: Literal["current", "prior"]
    qc_ok: bool
    pacs_date: str | None = Field(description="The study date in the PACS (YYYY-MM-DD).")


class PullResult(BaseModel):
    current: PulledStudy
    prior: PulledStudy | None
    priors: list[PacsStudy] = Field(
        description="The patient's earlier CR/DX studies in the PACS, newest first."
    )
    note: str = Field(description="Which prior was linked, or why none was.")


class Ingest(Protocol):
    """Add DICOM bytes (read from `source`) to the session as its current or prior study;
    returns the study id and whether it passed QC."""

    def __call__(self, data: bytes, role: Literal["current", "prior"],
                 source: PacsInstance) -> tuple[str, bool]: ...  # fmt: skip


def pull(client: PacsClient, request: PullRequest, ingest: Ingest) -> PullResult:
    study = client.study(request.study_uid)
    priors = client.priors(study)
    chosen = _choose_prior(request, study, priors)
    current_source, current_bytes = client.radiograph(study.study_uid)
    earlier = client.radiograph(chosen.study_uid) if chosen is not None else None
    # Everything is here: only now does the session change.
    current_id, current_ok = ingest(current_bytes, "current", current_source)
    current = PulledStudy(study_id=current_id, role="current", qc_ok=current_ok,
                          pacs_date=_iso(study))  # fmt: skip
    prior = None
    if chosen is not None and earlier is not None:
        prior_id, prior_ok = ingest(earlier[1], "prior", earlier[0])
        prior = PulledStudy(study_id=prior_id, role="prior", qc_ok=prior_ok,
                            pacs_date=_iso(chosen))  # fmt: skip
    return PullResult(current=current, prior=prior, priors=priors,
                      note=_note(request, chosen, priors))  # fmt: skip


def _choose_prior(request: PullRequest, study: PacsStudy,
                  priors: list[PacsStudy]) -> PacsStudy | None:  # fmt: skip
    if request.prior == "none":
        return None
    if request.prior == "auto":
        return priors[0] if priors else None
    picked = [p for p in priors if p.study_uid == request.prior]
    if not picked:
        raise PacsError(
            "the chosen prior is not an earlier CR/DX study of the same patient in the PACS; "
            "pick one of the listed priors, 'auto' or 'none'",
            code="bad_prior",
        )
    if picked[0].study_uid == study.study_uid:
        raise PacsError("a study cannot be its own prior", code="bad_prior")
    return picked[0]


def _iso(study: PacsStudy) -> str | None:
    return study.study_date.isoformat() if study.study_date else None


def _note(request: PullRequest, chosen: PacsStudy | None, priors: list[PacsStudy]) -> str:
    if chosen is not None:
        how = "the most recent" if request.prior == "auto" else "the chosen"
        return (f"linked {how} earlier CR/DX study of this patient ({_iso(chosen) or 'undated'})"
                f" as the prior; {len(priors)} earlier stud{'y' if len(priors) == 1 else 'ies'}"
                " in the PACS")  # fmt: skip
    if request.prior == "none":
        return "no prior linked, as asked"
    return "the PACS has no earlier CR/DX study of this patient: no prior, so no comparison"
