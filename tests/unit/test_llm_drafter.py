"""LLM drafting: a draft replaces the composer's claims only when every drafted claim verifies."""

from __future__ import annotations

import json

from radpilot.agent.llm.drafter import DRAFT_TOOL, Drafter
from radpilot.agent.types import Answer, Claim, DirectAnswer, StudyRef
from radpilot.agent.understanding import Vocabulary
from radpilot.agent.verifier import Verifier
from radpilot.core.contracts import Evidence
from radpilot.llm.client import ChatReply, RawToolCall
from tests.unit.test_llm_planner import ScriptedChat, unavailable

EVIDENCE = Evidence(
    id="E1", kind="model_output", tool="classify_findings", inputs={"study_id": "st_a"},
    values={"findings": [{"name": "Effusion", "probability": 0.81, "status": "present",
                          "threshold": 0.4, "rule_out": 0.1, "rule_in": 0.5}]},
)  # fmt: skip
COMPOSED = Answer(
    claims=[
        Claim(text="Effusion is likely (model probability 0.81; at or above its rule-in point "
                   "0.50).", evidence=["E1"], certainty="likely"),
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


def test_a_draft_keeps_the_direct_answer_to_a_closed_question() -> None:
    """ "Is there an effusion?" is answered "Yes: ..." first (issue 32). A verified rewording
    that drops the Yes (the draft tool's claims carry no `answers`, and nothing asks the draft
    to begin with the word) must not replace the direct answer: either the direct claim stays
    first, or the draft is not used. Otherwise the answer no longer answers the question, and
    the verifier then also drops `Answer.direct` (no kept claim answers "yes")."""
    direct = Claim(text="Yes: Effusion is likely (model probability 0.81; at or above its "
                        "rule-in point 0.50).", evidence=["E1"], certainty="likely",
                   answers="yes")  # fmt: skip
    composed = Answer(claims=[direct], evidence=[EVIDENCE],
                      direct=[DirectAnswer(word="yes", target="finding", subject="Effusion")])
    reply = drafted({"text": "A pleural effusion is likely: the model gives it 0.81.",
                     "evidence": ["E1"], "certainty": "likely"})  # fmt: skip
    drafter = Drafter(ScriptedChat(reply), Verifier(Vocabulary()))
    answer, _ = drafter.draft("Is there an effusion?", composed, {"E1": EVIDENCE}, STUDIES)
    assert answer.claims[0].answers == "yes" and answer.claims[0].text.startswith("Yes"), (
        f"the draft replaced the direct answer: {answer.claims[0].text!r}")
    verified, _ = Verifier(Vocabulary()).verify(answer, {"E1": EVIDENCE}, STUDIES)
    assert verified.direct == composed.direct
