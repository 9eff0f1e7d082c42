"""Request and response bodies of the REST API (`/v1`)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from radpilot.agent.types import Message, StudyRef
from radpilot.core.contracts import Evidence
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


LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _without_lone_surrogates(value: Any) -> Any:
    """JSON may carry an unpaired surrogate (`"\\ud800"`), which is no character at all: it
    becomes U+FFFD, so that a question containing one is read rather than refused."""
    return LONE_SURROGATE.sub("\ufffd", value) if isinstance(value, str) else value


class MessageRequest(BaseModel):
    """A question about the session's studies. The agent reads every study of the session
    and keeps track of which one a conversation is about."""

    model_config = ConfigDict(extra="forbid")

    text: Annotated[
        str,
        Field(min_length=1, max_length=4000, pattern=r"\w",
              description="The question: at least one letter or digit, at most 4,000 "
              "characters; control characters are removed."),  # fmt: skip
        # After the constraints, so that it wraps them: it runs first.
        BeforeValidator(_without_lone_surrogates),
    ]


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    ready: bool
    detail: str


class ToolsList(BaseModel):
    tools: list[dict[str, Any]]
