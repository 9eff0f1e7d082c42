"""The agent's public types: tool calls, plans, claims and the Answer contract.

The Answer's JSON shape is a public contract (REST API, CLI `--json`, evaluations):
`{claims: [{text, evidence, certainty}], evidence: [...], findings: [{name, probability,
status, evidence}], limitations: [str], trace_id}`.
"""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, Field

from radpilot.core.contracts import Evidence

Certainty = Literal["likely", "possible", "unlikely", "stated"]
Intent = Literal[
    "detect_findings",
    "ask_finding",
    "localize",
    "measure",
    "compare_prior",
    "guideline",
    "management",
    "differential",
    "similar_cases",
    "segment_anatomy",
    "segment_region",
    "explain",
    "report",
    "image_info",
    "out_of_scope",
]
Laterality = Literal["left", "right", "bilateral"]
# What a question asks about (DESIGN.md "Answers"): it decides which direct answer it gets.
TargetKind = Literal[
    "finding", "heart_size", "side", "anatomy", "attribute", "normality", "change", "knowledge",
    "unsupported", "out_of_scope", "identity", "read", "unclear",
]  # fmt: skip
DirectWord = Literal["yes", "no", "possibly", "cannot_assess"]
Polarity = Literal["abnormal", "normal"]


class ToolCall(BaseModel):
    tool: str
    arguments: dict[str, Any]
    reason: str = Field(description="Why the planner chose this call (shown in the trace).")


class Slots(BaseModel):
    """What the planner understood from the question besides its intent."""

    findings: list[str] = Field(default_factory=list)
    excluded: list[str] = Field(
        default_factory=list, description="Findings the question sets aside ('not the effusion')."
    )
    unsupported_findings: list[str] = Field(default_factory=list)
    laterality: Laterality | None = None
    mentions_prior: bool = False
    report_format: Literal["md", "json", "fhir"] | None = None


class Target(BaseModel):
    """What one question asks about, and how its answer must begin."""

    kind: TargetKind
    closed: bool = Field(default=False, description="a yes/no question: answered Yes/No/...")
    polarity: Polarity = Field(
        default="abnormal", description="'normal': Yes means the evidence says normal"
    )
    subject: str = Field(default="", description="the attribute or unsupported thing named")
    side: Laterality | None = Field(default=None, description="the side the question names")
    asks_side: bool = Field(default=False, description="where / which side")


class Understanding(BaseModel):
    intent: Intent
    confidence: float
    slots: Slots
    target: Target = Field(default_factory=lambda: Target(kind="read"))
    parts: list[Understanding] = Field(
        default_factory=list,
        description="Each question of a multi-part message, in order (empty: one question).",
    )
    method: str = Field(description="How the intent was recognised (embedding, rule, ...).")
    ignored: list[str] = Field(
        default_factory=list, description="Instruction-like sentences removed from the question."
    )
    cleaned: str = Field(default="", description="The question without those sentences.")
    resolved: list[str] = Field(
        default_factory=list,
        description="What references meant, from the dialogue focus (\"it -> Effusion\").",
    )


class PlannerAttempt(BaseModel):
    """One request of the LLM planner within a step, as the trace shows it."""

    outcome: Literal["ok", "invalid", "error", "circuit_open"]
    detail: str = ""
    raw_call: str = Field(default="", description="The call as the model wrote it (truncated).")
    elapsed_ms: float = 0.0


class PlanDecision(BaseModel):
    """A planner's decision for one step: call tools, ask the user, or compose the answer."""

    action: Literal["call_tools", "clarify", "compose"]
    calls: list[ToolCall] = Field(default_factory=list)
    question: str | None = None
    planner: str = Field(default="embedded", description="The planner that took this step.")
    note: str = ""
    attempts: list[PlannerAttempt] = Field(
        default_factory=list, description="LLM requests of this step (empty for embedded)."
    )
    prompt_version: str | None = None


class StudyRef(BaseModel):
    """A study attached to a session, and its role in the conversation."""

    study_id: str
    role: Literal["current", "prior"] = "current"
    acquired: date | None = None
    patient_key: str | None = None
    label: str = ""


class FocusFinding(BaseModel):
    name: str
    evidence: list[str] = Field(description="Ids of the evidence that answered it.")


class FocusRegion(BaseModel):
    """The last localized box: what "segment that" or "and on the left?" point at."""

    study_id: str
    finding: str
    box: tuple[float, float, float, float] = Field(description="x, y, w, h in image pixels")
    side: str
    evidence: str


class DialogueFocus(BaseModel):
    """What the conversation is about, carried from turn to turn (checkpointed)."""

    findings: list[FocusFinding] = Field(default_factory=list)
    study_id: str | None = None
    region: FocusRegion | None = None
    intent: Intent | None = None
    laterality: Laterality | None = None
    questions: list[str] = Field(
        default_factory=list, description="The latest questions, oldest first (bounded)."
    )

    def finding_names(self) -> list[str]:
        return [f.name for f in self.findings]

    def evidence_ids(self) -> set[str]:
        """The evidence the focus stands on (kept in the working ledger)."""
        ids = {i for f in self.findings for i in f.evidence}
        return ids | {self.region.evidence} if self.region is not None else ids


class Claim(BaseModel):
    text: str
    evidence: list[str]
    certainty: Certainty
    answers: DirectWord | None = Field(
        default=None, description="set on the claim that answers a closed question directly"
    )


class DirectAnswer(BaseModel):
    """The direct answer to one closed or where-question, as its claim begins."""

    word: DirectWord | None = Field(description="Yes / No / Possibly / I cannot assess")
    target: TargetKind
    subject: str = Field(description="what was asked about (a finding, 'heart size', ...)")
    side: Literal["left", "right", "both"] | None = None


class FindingRow(BaseModel):
    name: str
    probability: float | None
    status: str
    evidence: list[str]


class Answer(BaseModel):
    claims: list[Claim] = Field(default_factory=list)
    evidence: list[Evidence] = Field(default_factory=list)
    findings: list[FindingRow] = Field(default_factory=list)
    limitations: list[str] = Field(default_factory=list)
    clarification: str | None = None
    direct: list[DirectAnswer] = Field(
        default_factory=list, description="One per question asked, in order: the answer first."
    )
    trace_id: str = ""


class Message(BaseModel):
    role: Literal["user", "assistant"]
    text: str
    answer: Answer | None = None


class TraceEvent(BaseModel):
    """One step of a turn as it is streamed and recorded."""

    kind: Literal[
        "understand", "plan", "tool_start", "tool_end", "draft", "claim", "verify", "final",
        "error",
    ]
    data: dict[str, Any] = Field(default_factory=dict)
