"""Dialogue memory: each reference form resolves against the focus of earlier turns, and the
focus follows the conversation (no model needed: the classifier's intent is given)."""

import pytest

from radpilot.agent.dialogue import advance, history, resolve
from radpilot.agent.types import (
    Answer,
    Claim,
    DialogueFocus,
    FindingRow,
    FocusFinding,
    FocusRegion,
    Intent,
    Understanding,
)
from radpilot.agent.understanding import Vocabulary, extract_slots
from radpilot.core.contracts import Evidence

EFFUSION_FOCUS = DialogueFocus(
    findings=[FocusFinding(name="Effusion", evidence=["E1"])],
    study_id="st_a",
    intent="ask_finding",
)


@pytest.fixture(scope="module")
def vocabulary() -> Vocabulary:
    return Vocabulary()


def understood(vocabulary: Vocabulary, question: str, intent: Intent) -> Understanding:
    return Understanding(intent=intent, confidence=0.9, method="test",
                         slots=extract_slots(question, vocabulary), cleaned=question)  # fmt: skip


@pytest.mark.parametrize(
    ("question", "intent", "expected_intent", "findings"),
    [
        ("Where is it?", "localize", "localize", ["Effusion"]),
        ("How big is it?", "measure", "measure", []),
        ("Is it new?", "compare_prior", "compare_prior", ["Effusion"]),
        ("What should we do about that?", "management", "management", ["Effusion"]),
        ("What else could it be?", "differential", "differential", ["Effusion"]),
        ("and pneumonia?", "ask_finding", "ask_finding", ["Pneumonia"]),
        ("What about the heart?", "ask_finding", "ask_finding", ["Cardiomegaly"]),
        ("No, I meant the nodule", "ask_finding", "ask_finding", ["Nodule"]),
        ("Is there a pneumothorax?", "ask_finding", "ask_finding", ["Pneumothorax"]),
        ("Is it there?", "ask_finding", "ask_finding", ["Effusion"]),
    ],
)
def test_references_resolve_against_the_focus(
    vocabulary: Vocabulary, question: str, intent: Intent, expected_intent: str,
    findings: list[str],
) -> None:  # fmt: skip
    resolved = resolve(understood(vocabulary, question, intent), EFFUSION_FOCUS)
    assert resolved.intent == expected_intent
    assert resolved.slots.findings == findings


def test_a_topic_switch_is_not_overridden_by_the_focus(vocabulary: Vocabulary) -> None:
    resolved = resolve(understood(vocabulary, "Is there a pneumothorax?", "ask_finding"),
                       EFFUSION_FOCUS)  # fmt: skip
    assert resolved.resolved == []


def test_a_side_follow_up_repeats_the_last_question(vocabulary: Vocabulary) -> None:
    focus = EFFUSION_FOCUS.model_copy(update={"intent": "localize"})
    resolved = resolve(understood(vocabulary, "and on the left?", "ask_finding"), focus)
    assert (resolved.intent, resolved.slots.findings) == ("localize", ["Effusion"])
    assert resolved.slots.laterality == "left"
    assert resolved.resolved and "left" in resolved.resolved[0]


def test_the_heart_after_a_measurement_is_a_measurement(vocabulary: Vocabulary) -> None:
    focus = EFFUSION_FOCUS.model_copy(update={"intent": "measure"})
    resolved = resolve(understood(vocabulary, "what about the heart?", "ask_finding"), focus)
    assert resolved.intent == "measure"


def test_a_correction_keeps_the_kind_of_question(vocabulary: Vocabulary) -> None:
    focus = EFFUSION_FOCUS.model_copy(update={"intent": "localize"})
    resolved = resolve(understood(vocabulary, "no, I meant the nodule", "ask_finding"), focus)
    assert (resolved.intent, resolved.slots.findings) == ("localize", ["Nodule"])
    assert "correction" in resolved.resolved[0]


def test_plural_references_take_every_finding_in_focus(vocabulary: Vocabulary) -> None:
    focus = EFFUSION_FOCUS.model_copy(update={"findings": [
        FocusFinding(name="Effusion", evidence=["E1"]),
        FocusFinding(name="Atelectasis", evidence=["E1"]),
    ]})  # fmt: skip
    resolved = resolve(understood(vocabulary, "where are they?", "localize"), focus)
    assert resolved.slots.findings == ["Effusion", "Atelectasis"]


def test_without_a_focus_nothing_is_invented(vocabulary: Vocabulary) -> None:
    resolved = resolve(understood(vocabulary, "Where is it?", "localize"), DialogueFocus())
    assert resolved.slots.findings == []
    bare = resolve(understood(vocabulary, "is it there?", "ask_finding"), DialogueFocus())
    assert bare.intent == "detect_findings"  # names nothing and nothing is in focus: a read


def test_the_focus_follows_the_answered_findings_and_the_last_box(vocabulary: Vocabulary) -> None:
    question = understood(vocabulary, "Where is the effusion?", "localize")
    located = Evidence(
        id="E2", kind="model_output", tool="localize_finding",
        inputs={"study_id": "st_a", "finding": "Effusion"},
        values={"finding": "Effusion",
                "regions": [{"box": [10.0, 20.0, 30.0, 40.0], "side": "left"}]},
    )  # fmt: skip
    answer = Answer(
        claims=[Claim(text="Effusion is likely.", evidence=["E1"], certainty="likely")],
        findings=[FindingRow(name="Effusion", probability=0.8, status="present",
                             evidence=["E1"])],  # fmt: skip
    )
    focus = advance(DialogueFocus(), question, answer, [located], "st_a")
    assert focus.finding_names() == ["Effusion"]
    assert focus.findings[0].evidence == ["E1"]
    assert focus.region == FocusRegion(study_id="st_a", finding="Effusion",
                                       box=(10.0, 20.0, 30.0, 40.0), side="left", evidence="E2")
    assert focus.intent == "localize" and focus.questions == ["Where is the effusion?"]
    # Later turns keep the evidence that answered the finding earlier.
    again = advance(focus, understood(vocabulary, "segment that", "segment_region"), Answer(),
                    [], "st_a")  # fmt: skip
    assert again.findings[0].evidence == ["E1"]
    # An explanation leaves the subject where it was.
    why = understood(vocabulary, "Why?", "explain")
    assert advance(focus, why, Answer(), [], "st_a").finding_names() == ["Effusion"]


def test_an_open_read_puts_what_it_found_in_focus(vocabulary: Vocabulary) -> None:
    rows = [FindingRow(name=n, probability=p, status=s, evidence=["E1"])
            for n, p, s in [("Effusion", 0.7, "present"), ("Nodule", 0.2, "absent"),
                            ("Mass", 0.4, "uncertain")]]  # fmt: skip
    focus = advance(DialogueFocus(), understood(vocabulary, "What do you see?", "detect_findings"),
                    Answer(findings=rows), [], "st_a")  # fmt: skip
    assert focus.finding_names() == ["Effusion", "Mass"]


def test_the_llm_history_stays_within_its_budget() -> None:
    focus = EFFUSION_FOCUS.model_copy(update={"questions": [f"question {i} " * 20
                                                            for i in range(6)]})
    text = history(focus, limit=400)
    assert len(text) <= 400
    assert "Effusion (E1)" in text
    assert "question 5" in text  # the newest question is kept first
    assert history(DialogueFocus()) == "none (first question)"


def test_a_question_about_everything_is_not_narrowed_to_the_focus(vocabulary: Vocabulary) -> None:
    question = understood(vocabulary, "Has anything changed since last week?", "compare_prior")
    assert resolve(question, EFFUSION_FOCUS).slots.findings == []


def test_a_correction_that_asks_another_kind_of_question_keeps_it(vocabulary: Vocabulary) -> None:
    focus = EFFUSION_FOCUS.model_copy(update={"intent": "measure"})
    resolved = resolve(understood(vocabulary, "I meant the nodule: what's the differential?",
                                  "differential"), focus)  # fmt: skip
    assert (resolved.intent, resolved.slots.findings) == ("differential", ["Nodule"])
