"""The graph's typed state: the conversation (persisted) and the current turn's work."""

from __future__ import annotations

from pydantic import BaseModel, Field, model_validator

from radpilot.agent.planner import ToolFailure
from radpilot.agent.types import (
    Answer,
    DialogueFocus,
    Message,
    PlanDecision,
    StudyRef,
    TraceEvent,
    Understanding,
)
from radpilot.core.contracts import Evidence

# What the state keeps of the conversation (the session history keeps all of it): the last
# three exchanges ("why?", "how sure are you?" read the previous answer), and the evidence the
# focus, those answers and the latest results cite, so that repeated questions reuse it.
RECENT_MESSAGES = 6
RECENT_EVIDENCE = 24


class AgentState(BaseModel):
    """Only what the next turn needs, so that a turn's checkpoint does not grow with the
    conversation; the whole conversation is in `radpilot.agent.history`."""

    # The session: kept across turns and restarts.
    messages: list[Message] = Field(default_factory=list, description="the recent ones")
    message_count: int = Field(default=0, description="messages in the whole session")
    studies: list[StudyRef] = Field(default_factory=list)
    evidence: list[Evidence] = Field(default_factory=list, description="the working ledger")
    evidence_count: int = Field(default=0, description="evidence in the whole session")
    focus: DialogueFocus = Field(default_factory=DialogueFocus)
    # The current turn: reset when a new question arrives.
    question: str = ""
    understanding: Understanding | None = None
    decision: PlanDecision | None = None
    turn_evidence: list[str] = Field(default_factory=list)
    failures: list[ToolFailure] = Field(default_factory=list)
    step: int = 0
    trace: list[TraceEvent] = Field(default_factory=list)
    answer: Answer | None = None
    trace_id: str = ""

    @model_validator(mode="after")
    def _count_what_it_holds(self) -> AgentState:
        # Sessions checkpointed before the counters existed held everything in the state.
        self.message_count = max(self.message_count, len(self.messages))
        self.evidence_count = max(self.evidence_count, len(self.evidence))
        return self


def working_ledger(
    ledger: list[Evidence], focus: DialogueFocus, recent: list[Message], turn: list[str]
) -> list[Evidence]:
    """The evidence the next turn may need, in ledger order: what the focus and the recent
    answers cite, this turn's, and the latest `RECENT_EVIDENCE` results."""
    cited = {*turn, *focus.evidence_ids()}
    for message in recent:
        if message.answer is not None:
            cited.update(e.id for e in message.answer.evidence)
            cited.update(i for claim in message.answer.claims for i in claim.evidence)
    latest = {e.id for e in ledger[-RECENT_EVIDENCE:]}
    return [e for e in ledger if e.id in cited or e.id in latest]


# Types the checkpointer may rebuild from its store (LangGraph's msgpack allow-list).
PERSISTED_TYPES = [
    ("radpilot.agent.state", "AgentState"),
    *[("radpilot.agent.types", name) for name in (
        "Answer", "Claim", "DialogueFocus", "FindingRow", "FocusFinding", "FocusRegion",
        "Message", "PlanDecision", "PlannerAttempt", "Slots",
        "StudyRef", "ToolCall", "TraceEvent", "Understanding",
    )],
    ("radpilot.agent.planner", "ToolFailure"),
    *[("radpilot.core.contracts", name) for name in (
        "Artefact", "Citation", "Evidence", "ModelIdentity",
    )],
]  # fmt: skip
