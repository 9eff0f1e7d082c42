"""Request and response bodies of the REST API (`/v1`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from radpilot.agent.types import Message, StudyRef
from radpilot.tools.base import Evidence
from radpilot.tools.qc import QCIssue


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


class SessionCreated(BaseModel):
    session_id: str


class SessionView(BaseModel):
    session_id: str
    messages: list[Message]
    studies: list[StudyRef]
    evidence: list[Evidence]


class StudyUploaded(BaseModel):
    study_id: str
    role: Literal["current", "prior"]
    qc_ok: bool
    qc: list[QCIssue]


class MessageRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=4000)
    study_ids: list[str] | None = Field(
        default=None, description="Studies the question is about; each must be in the session."
    )


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    ready: bool
    detail: str


class ToolsList(BaseModel):
    tools: list[dict[str, Any]]
