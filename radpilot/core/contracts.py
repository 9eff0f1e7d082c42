"""The contract types every layer speaks: evidence and its citations, model cards and
identities, artefacts, and the result of a tool call. Tools produce them, the agent cites
them, knowledge retrieval returns them, the interfaces serialize them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

EvidenceKind = Literal["model_output", "measurement", "comparison", "guideline", "case"]


class ModelCard(BaseModel):
    """What a user must know about a set of weights before trusting its output."""

    name: str
    version: str
    architecture: str
    source: str = Field(
        description="Where the weights come from (URL, package, or 'trained here')."
    )
    licence: str
    sha256: str | None = None
    intended_use: str
    limitations: list[str] = Field(default_factory=list)
    training_data: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)


class ModelIdentity(BaseModel):
    """The exact model behind an output: enough to reproduce or audit it."""

    name: str
    version: str
    sha256: str | None = None


class Artefact(BaseModel):
    """A file a tool produced (overlay image, mask), stored under the state directory."""

    id: str
    kind: Literal["overlay", "mask", "plot", "other"]
    media_type: str = "image/png"
    path: str = Field(description="Path relative to the artefact store.")


class Citation(BaseModel):
    document: str
    section: str | None = None
    issuing_body: str | None = None
    year: int | None = None
    url: str | None = None


class Evidence(BaseModel):
    """One entry of the evidence ledger; claims cite these by id (E1, E2, ...)."""

    id: str = Field(pattern=r"^E[1-9][0-9]*$")
    kind: EvidenceKind
    tool: str
    models: list[ModelIdentity] = Field(default_factory=list)
    inputs: dict[str, Any] = Field(default_factory=dict)
    values: dict[str, Any] = Field(default_factory=dict)
    artefacts: list[Artefact] = Field(default_factory=list)
    citation: Citation | None = None
    summary: str = ""


class ToolError(BaseModel):
    code: str
    message: str


class ToolResult(BaseModel):
    """What one tool call produced, success or failure, with its timing."""

    tool: str
    ok: bool
    inputs: dict[str, Any]
    output: dict[str, Any] | None = None
    error: ToolError | None = None
    evidence_kind: EvidenceKind
    elapsed_ms: float
