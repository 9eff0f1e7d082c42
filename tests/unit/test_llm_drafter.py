"""LLM drafting: a draft replaces the composer's claims only when every drafted claim verifies."""

from __future__ import annotations

import json

from radpilot.agent.llm.drafter import DRAFT_TOOL, Drafter
from radpilot.agent.types import Answer, Claim, StudyRef
from radpilot.agent.understanding import Vocabulary
from radpilot.agent.verifier import Verifier
from radpilot.core.contracts import Evidence
from radpilot.llm.client import ChatReply, RawToolCall
from tests.unit.test_llm_planner import ScriptedChat, unavailable

EVIDENCE = Evidence(
    id="E1", kind="model_output", tool="classify_findings", inputs={"study_id": "st_a"},
    values={"findings": [{"name": "Effusion", "probability": 0.81, "status": "present",
                          "threshold": 0.5}]},
)  # fmt: skip
COMPOSED = Answer(
    claims=[
        Claim(text="Effusion is likely (model probability 0.81; decision threshold 0.50).",
              evidence=["E1"], certainty="likely"),
    ],
    evidence=[EVIDENCE],
)  # fmt: skip
STUDIES = [StudyRef(study_id="st_a")]


def drafted(*claims: dict[str, object]) -> ChatReply:
    arguments = json.dumps({"claims": list(claims)})
    return ChatReply(tool_calls=[RawToolCall(name=DRAFT_TOOL, arguments=arguments)])


def draft_with(reply: ChatReply | Exception) -> tuple[Answer, str, bool]:
    drafter = Drafter(ScriptedChat(reply), Verifier(Vocabulary()))
    answer, outcome = drafter.draft("Is there an effusion?", COMPOSED, {"E1": EVIDENCE}, STUDIES)
    return answer, outcome.reason, outcome.used


def test_a_verified_rewording_is_used() -> None:
    text = "A pleural effusion is likely: the model gives it 0.81."
    answer, reason, used = draft_with(
        drafted({"text": text, "evidence": ["E1"], "certainty": "likely"})
    )
    assert used and [c.text for c in answer.claims] == [text]


def test_a_draft_with_a_wrong_number_is_not_used() -> None:
    text = "A pleural effusion is likely (model probability 0.95)."
    answer, reason, used = draft_with(
        drafted({"text": text, "evidence": ["E1"], "certainty": "likely"})
    )
    assert not used and "failed verification" in reason and answer == COMPOSED


def test_a_draft_that_says_nothing_checkable_is_not_used() -> None:
    answer, reason, used = draft_with(
        drafted({"text": "All is well.", "evidence": ["E1"], "certainty": "likely"})
    )
    assert not used and "1 drafted statement(s) failed verification" in reason
    assert answer == COMPOSED


def test_a_malformed_or_missing_draft_keeps_the_composed_answer() -> None:
    bad = ChatReply(tool_calls=[RawToolCall(name=DRAFT_TOOL, arguments='{"claims": [{"t": 1}]}')])
    for reply in (bad, ChatReply(content="no call"), unavailable()):
        answer, reason, used = draft_with(reply)
        assert not used and answer == COMPOSED and reason
