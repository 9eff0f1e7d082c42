"""The graph's typed state: the conversation (persisted) and the current turn's work."""

from __future__ import annotations

from pydantic import BaseModel, Field

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
from radpilot.tools.base import Evidence


class AgentState(BaseModel):
    # The session: kept across turns and restarts.
    messages: list[Message] = Field(default_factory=list)
    studies: list[StudyRef] = Field(default_factory=list)
    evidence: list[Evidence] = Field(default_factory=list)
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

    def artefact_ids(self) -> list[str]:
        """Every artefact the session's turns produced. The ledger holds them all; the answers'
        copies of evidence are read too, so that nothing a client was shown is left behind."""
        answers = [m.answer for m in self.messages if m.answer is not None]
        if self.answer is not None:
            answers.append(self.answer)
        evidence = [*self.evidence, *(e for answer in answers for e in answer.evidence)]
        return list(dict.fromkeys(a.id for e in evidence for a in e.artefacts))


def turn_reset(question: str, trace_id: str) -> dict[str, object]:
    """The update that starts a new turn (session fields untouched)."""
    return {
        "question": question,
        "understanding": None,
        "decision": None,
        "turn_evidence": [],
        "failures": [],
        "step": 0,
        "trace": [],
        "answer": None,
        "trace_id": trace_id,
    }


# Types the checkpointer may rebuild from its store (LangGraph's msgpack allow-list).
PERSISTED_TYPES = [
    ("radpilot.agent.state", "AgentState"),
    *[("radpilot.agent.types", name) for name in (
        "Answer", "Claim", "DialogueFocus", "FindingRow", "FocusFinding", "FocusRegion",
        "Message", "PlanDecision", "PlannerAttempt", "Recommendation", "Slots",
        "StudyRef", "ToolCall", "TraceEvent", "Understanding",
    )],
    ("radpilot.agent.planner", "ToolFailure"),
    *[("radpilot.tools.base", name) for name in (
        "Artefact", "Citation", "Evidence", "ModelIdentity",
    )],
]  # fmt: skip
