"""Question targets (radpilot/agent/targets.py, prompts/targets.yaml): what a clinician's
question asks about, whether it is closed, its polarity and side; shorthand and misspellings;
several questions in one message. No embedding model: the intent the classifier would give is
passed in, and the slots come from the same extraction the recognizer uses."""

from __future__ import annotations

from typing import Any

import pytest

from radpilot.agent.dialogue import resolve
from radpilot.agent.direct import DirectAnswers
from radpilot.agent.planner import TurnView
from radpilot.agent.targets import QuestionReader, split_questions
from radpilot.agent.types import (
    DialogueFocus,
    FocusFinding,
    Intent,
    Slots,
    StudyRef,
    Understanding,
)
from radpilot.agent.understanding import (
    Vocabulary,
    extract_slots,
    is_bare_finding_question,
    last_question,
    question_slots,
    refine,
    with_target,
)
from radpilot.core.contracts import Evidence


@pytest.fixture(scope="module")
def vocabulary() -> Vocabulary:
    return Vocabulary()


@pytest.fixture(scope="module")
def reader(vocabulary: Vocabulary) -> QuestionReader:
    return QuestionReader(list(vocabulary.canonical))


def read(reader: QuestionReader, vocabulary: Vocabulary, question: str,
         intent: Intent) -> Understanding:  # fmt: skip
    """As IntentRecognizer.understand does for the first question of a conversation, after the
    classifier: shorthand and spelling, slots, the rules, the dialogue, the target, and the
    intent the target needs."""
    text = reader.normalise(question)
    slots, clause, asked = question_slots(text, vocabulary, reader)
    refined, _ = refine(intent, text, slots, clause=clause)
    understanding = Understanding(intent=refined, confidence=1.0, slots=slots, method="test",
                                  cleaned=text)  # fmt: skip
    resolved = resolve(understanding, DialogueFocus())
    target = reader.target(text, resolved.intent, resolved.slots, first_turn=True, clause=asked)
    return with_target(resolved, target)


@pytest.mark.parametrize(
    ("question", "intent", "expected"),
    [
        # things no installed model sees: "I cannot assess <category>"
        ("is the aorta unfolded?", "ask_finding",
         {"kind": "unsupported", "closed": True, "subject": "the aorta"}),
        ("free air under the diaphragm?", "ask_finding",
         {"kind": "unsupported", "closed": True, "subject": "free air under the diaphragm"}),
        ("ETT position ok?", "ask_finding",
         {"kind": "unsupported", "closed": True, "subject": "lines, tubes and devices"}),
        ("any rib fractures?", "ask_finding",
         {"kind": "unsupported", "closed": True, "subject": "bones and fractures"}),
        ("is the mediastinum widened?", "detect_findings",
         {"kind": "unsupported", "subject": "the mediastinum"}),
        ("does the patient have COVID?", "ask_finding",
         {"kind": "unsupported", "subject": "specific infections"}),
        # identity: never available, whatever the classifier says
        ("what's the patient's DOB?", "image_info", {"kind": "identity", "closed": False}),
        ("who is this patient?", "detect_findings", {"kind": "identity"}),
        # off topic and general knowledge about radiography
        ("what's the weather like today?", "detect_findings",
         {"kind": "out_of_scope", "subject": "weather"}),
        ("is a CXR safe in pregnancy?", "detect_findings",
         {"kind": "knowledge", "subject": "radiography"}),
        ("how much radiation is a chest x-ray?", "guideline", {"kind": "knowledge"}),
        # a finding, closed; shorthand and misspellings spelt out
        ("is there pneumonia?", "ask_finding",
         {"kind": "finding", "closed": True, "subject": "Pneumonia"}),
        ("r/o ptx", "ask_finding", {"kind": "finding", "closed": True, "subject": "Pneumothorax"}),
        ("?pna", "ask_finding", {"kind": "finding", "closed": True, "subject": "Pneumonia"}),
        ("pnuemothorax?", "ask_finding",
         {"kind": "finding", "closed": True, "subject": "Pneumothorax"}),
        ("any efusion?", "ask_finding", {"kind": "finding", "closed": True, "subject": "Effusion"}),
        # heart size, with its polarity
        ("is the heart size normal?", "ask_finding",
         {"kind": "heart_size", "closed": True, "polarity": "normal"}),
        ("is the heart enlarged?", "ask_finding",
         {"kind": "heart_size", "closed": True, "polarity": "abnormal"}),
        ("is the CTR normal?", "measure",
         {"kind": "heart_size", "closed": True, "polarity": "normal"}),
        ("is the heart bigger than before?", "compare_prior", {"kind": "change"}),
        # a side named, or asked for
        ("effusion on the left?", "ask_finding",
         {"kind": "side", "closed": True, "subject": "Effusion", "side": "left"}),
        ("ptx on the R?", "ask_finding",
         {"kind": "side", "closed": True, "subject": "Pneumothorax", "side": "right"}),
        ("where is the pneumothorax?", "localize",
         {"kind": "side", "closed": False, "subject": "Pneumothorax", "asks_side": True}),
        ("which lung is whiter?", "detect_findings",
         {"kind": "side", "subject": "opacity side", "asks_side": True}),
        # normality: "clear" asks whether it is normal (Yes means nothing found)
        ("are the lungs clear?", "detect_findings",
         {"kind": "normality", "closed": True, "polarity": "normal", "subject": "lungs"}),
        ("is this film normal?", "detect_findings",
         {"kind": "normality", "closed": True, "polarity": "normal", "subject": "film"}),
        ("anything abnormal?", "detect_findings",
         {"kind": "normality", "closed": True, "polarity": "abnormal", "subject": "film"}),
        # image attributes
        ("is this AP?", "image_info",
         {"kind": "attribute", "closed": True, "subject": "projection"}),
        ("is this a CT?", "image_info", {"kind": "attribute", "subject": "modality"}),
        ("is the patient male or female?", "image_info", {"kind": "attribute", "subject": "sex"}),
        ("how old is the patient?", "image_info",
         {"kind": "attribute", "closed": False, "subject": "age"}),
        # an acknowledgement first is not a question about normality
        ("ok ok. any nodules on this one?", "ask_finding",
         {"kind": "finding", "closed": True, "subject": "Nodule", "polarity": "abnormal"}),
        ("fine - any consolidation?", "ask_finding",
         {"kind": "finding", "subject": "Consolidation", "polarity": "abnormal"}),
        ("ok fair, but is there a pnuemothorax at all?", "ask_finding",
         {"kind": "finding", "subject": "Pneumothorax", "polarity": "abnormal"}),
        # the history before the question names no side and no target
        ("58F, SOB, reduced BS R base. effusion?", "ask_finding",
         {"kind": "finding", "closed": True, "subject": "Effusion", "side": None}),
        ("74M known HFrEF. heart size normal?", "ask_finding",
         {"kind": "heart_size", "closed": True, "polarity": "normal"}),
        # a finding word inside something no model sees
        ("any surgical emphysema in the chest wall?", "ask_finding",
         {"kind": "unsupported", "subject": "subcutaneous emphysema"}),
        ("can you check the pacing lead position?", "detect_findings",
         {"kind": "unsupported", "subject": "lines, tubes and devices"}),
        # knowledge, never a read of the image
        ("how do you tell if a CXR is PA or AP?", "image_info", {"kind": "knowledge"}),
        ("how's the CTR measured?", "measure", {"kind": "knowledge"}),
        ("should she wear a lead apron for it?", "management",
         {"kind": "knowledge", "subject": "radiography"}),
        # a change question names its finding
        ("L ptx still there compared with the previous?", "compare_prior",
         {"kind": "change", "closed": True, "subject": "Pneumothorax"}),
        # an open read, and a question not understood
        ("what do you see?", "detect_findings", {"kind": "read", "closed": False}),
        ("banana", "detect_findings", {"kind": "unclear"}),
    ],
)  # fmt: skip
def test_the_target_of_a_clinicians_question(
    reader: QuestionReader, vocabulary: Vocabulary, question: str, intent: Intent,
    expected: dict[str, Any],
) -> None:  # fmt: skip
    target = read(reader, vocabulary, question, intent).target
    assert {key: getattr(target, key) for key in expected} == expected, target


@pytest.mark.parametrize(
    ("question", "intent", "expected_intent", "findings"),
    [
        ("is the aorta unfolded?", "detect_findings", "ask_finding", []),  # no image read
        ("what's the patient's DOB?", "image_info", "out_of_scope", []),
        ("what's the weather like today?", "detect_findings", "out_of_scope", []),
        ("is a CXR safe in pregnancy?", "detect_findings", "guideline", []),
        ("is the heart size normal?", "detect_findings", "ask_finding", ["Cardiomegaly"]),
        ("effusion on the left?", "ask_finding", "localize", ["Effusion"]),  # the side needs it
        ("are the lungs clear?", "ask_finding", "detect_findings", []),
        ("is this AP?", "detect_findings", "image_info", []),
    ],
)
def test_the_target_sets_the_intent_whose_tools_answer_it(
    reader: QuestionReader, vocabulary: Vocabulary, question: str, intent: Intent,
    expected_intent: str, findings: list[str],
) -> None:  # fmt: skip
    understanding = read(reader, vocabulary, question, intent)
    assert understanding.intent == expected_intent
    assert understanding.slots.findings == findings
    assert understanding.method.endswith(f"; target: {understanding.target.kind}")


def test_an_unsupported_question_carries_its_category_as_the_unsupported_finding(
    reader: QuestionReader, vocabulary: Vocabulary
) -> None:
    understanding = read(reader, vocabulary, "free air under the diaphragm?", "ask_finding")
    assert understanding.slots.unsupported_findings == ["free air under the diaphragm"]
    # every phrase maps to its category, once, in the order named
    assert vocabulary.unsupported_in("rib fracture and a central line, more fractures") == [
        "bones and fractures", "lines, tubes and devices"]  # fmt: skip


def test_a_clinical_decision_is_out_of_scope(reader: QuestionReader) -> None:
    # "Should I start him on antibiotics?": the rules flag a treatment decision
    question = "Should I start him on antibiotics for the effusion?"
    target = reader.target(question, "management", Slots(findings=["Effusion"]), decision=True)
    assert target.kind == "out_of_scope"
    asked = Understanding(intent="management", confidence=1.0, slots=Slots(findings=["Effusion"]),
                          method="test")  # fmt: skip
    decided = with_target(asked, target)
    assert decided.intent == "out_of_scope" and decided.slots.findings == []


@pytest.mark.parametrize(
    ("written", "spelt_out"),
    [
        ("r/o ptx", "rule out pneumothorax"),
        ("?pna", "query pneumonia"),
        ("ETT ok?", "endotracheal tube ok?"),
        ("b/l effusions, CTR?", "bilateral effusions, cardiothoracic ratio?"),
        ("pnuemothorax?", "pneumothorax?"),
        ("any efusion on the lt?", "any effusion on the left?"),
        ("any cardiomegally?", "any cardiomegaly?"),
        ("mass?", "mass?"),  # short words are matched exactly ("mass" is not "mast")
        ("is the lung clear?", "is the lung clear?"),  # correct words are left as they are
    ],
)
def test_shorthand_and_misspellings_are_spelt_out(
    reader: QuestionReader, written: str, spelt_out: str
) -> None:
    assert reader.normalise(written) == spelt_out


def test_a_capitalised_finding_word_is_left_as_it_is(
    reader: QuestionReader, vocabulary: Vocabulary
) -> None:
    """A question opening with the finding ("Effusion?") is the commonest bare question. The
    spelling correction must not touch a correctly spelt word because it is capitalised: it
    reads "ffusion" (its word pattern starts at the first lower-case letter), "corrects" it to
    "effusion" and writes "Eeffusion?", which names no finding, so the question is not
    understood (a clarifying question instead of Yes/No)."""
    for question in ("Effusion?", "Pneumothorax on the left?", "Consolidation? Any effusion?"):
        normalised = reader.normalise(question)
        assert normalised.lower() == question.lower(), f"{question!r} became {normalised!r}"
        assert vocabulary.findings_in(normalised) == vocabulary.findings_in(question)
    assert read(reader, vocabulary, "Effusion?", "ask_finding").target.subject == "Effusion"


def test_the_cardiothoracic_ratio_of_this_film_is_measured_not_explained(
    reader: QuestionReader, vocabulary: Vocabulary
) -> None:
    """ "What is the cardiothoracic ratio?" with a study asks for this film's ratio: the dev
    scenarios (evals/scenarios/dev/measure-003, -005, -010, -011, -013) expect `measure`, and
    the rules map it to `measure`. The knowledge vocabulary's "what is the cardiothoracic ratio"
    / "what is the ctr" made it a knowledge question, so with_target turned the intent into
    `guideline` and nothing was measured. A definition ("what is a CTR?") stays knowledge."""
    assert read(reader, vocabulary, "what is a CTR?", "guideline").target.kind == "knowledge"
    for question in ("What is the cardiothoracic ratio?", "What is the CTR?", "what's the CTR"):
        understanding = read(reader, vocabulary, question, "measure")
        assert (understanding.target.kind, understanding.intent) == ("heart_size", "measure"), (
            f"{question!r}: {understanding.target.kind} / {understanding.intent}")


def test_an_either_or_side_question_is_answered_with_the_side_not_yes(
    reader: QuestionReader, vocabulary: Vocabulary
) -> None:
    """ "Is the effusion on the left or right?" asks which side. Both side words make the slot
    "bilateral" and the opener "is" makes it closed, so the answer began "Yes:" (bilateral
    "agrees" with any side); it must name the side instead."""
    understanding = read(reader, vocabulary, "is the effusion on the left or right?", "localize")
    row = {"name": "Effusion", "probability": 0.72, "threshold": 0.25, "rule_out": 0.10,
           "rule_in": 0.40, "status": "present"}  # fmt: skip
    classified = Evidence(id="E1", kind="model_output", tool="classify_findings",
                          inputs={"study_id": "st_a"}, values={"findings": [row]})  # fmt: skip
    located = Evidence(id="E2", kind="model_output", tool="localize_finding",
                       inputs={"study_id": "st_a", "finding": "Effusion"},
                       values={"finding": "Effusion", "image_size": [1024, 1024],
                               "regions": [{"box": [600.0, 700.0, 200.0, 150.0],
                                            "side": "left"}]})  # fmt: skip
    view = TurnView(question="is the effusion on the left or right?", understanding=understanding,
                    studies=[StudyRef(study_id="st_a")], ledger=[classified, located],
                    turn_evidence=["E1", "E2"], step=1, available_tools=[])  # fmt: skip
    written = DirectAnswers().write(view, [classified, located])
    assert written is not None
    claim, summary = written
    assert summary.side == "left"
    assert claim.answers is None and claim.text.startswith("Left side:"), claim.text


# --- several questions in one message --------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "parts"),
    [
        ("any effusion? and the CTR?", ["any effusion?", "the CTR?"]),
        ("Is there an effusion? Is the heart enlarged?",
         ["Is there an effusion?", "Is the heart enlarged?"]),
        ("any effusion and what's the CTR", ["any effusion", "what's the CTR"]),
        ("is there a pneumothorax and is the aorta unfolded?",
         ["is there a pneumothorax", "is the aorta unfolded?"]),
        ("Any effusion? Also, is the heart enlarged?",
         ["Any effusion?", "is the heart enlarged?"]),
        # context sentences stay with the question after them; one question stays whole
        ("58F, breathless. Effusion?", ["58F, breathless. Effusion?"]),
        ("Is there an effusion on the left and right?", ["Is there an effusion on the left and "
                                                         "right?"]),
        ("Any effusion?", ["Any effusion?"]),
        # at most three
        ("Effusion? Pneumothorax? Nodule? Mass?", ["Effusion?", "Pneumothorax?", "Nodule?"]),
    ],
)  # fmt: skip
def test_a_message_is_split_into_its_questions(message: str, parts: list[str]) -> None:
    assert split_questions(message) == parts


def test_each_part_gets_its_own_target(reader: QuestionReader, vocabulary: Vocabulary) -> None:
    message = reader.normalise("any effusion? and what's the CTR?")
    intents: list[Intent] = ["ask_finding", "measure"]
    parts = [read(reader, vocabulary, part, intent)
             for part, intent in zip(split_questions(message), intents, strict=True)]  # fmt: skip
    assert [(p.target.kind, p.target.closed, p.intent) for p in parts] == [
        ("finding", True, "ask_finding"), ("heart_size", False, "measure")]  # fmt: skip
    whole = parts[0].model_copy(update={"parts": parts})
    view = TurnView(question=message, understanding=whole, studies=[], ledger=[],
                    turn_evidence=[], step=0, available_tools=[])  # fmt: skip
    assert [v.understanding.target.kind for v in view.parts()] == ["finding", "heart_size"]
    assert [v.cleaned_question for v in view.parts()] == ["any effusion?",
                                                          "what's the cardiothoracic ratio?"]
    single = view.model_copy(update={"understanding": parts[0]})
    assert single.parts() == [single]


@pytest.mark.parametrize(
    ("question", "findings", "unsupported"),
    [
        ("any surgical emphysema in the chest wall?", [], ["subcutaneous emphysema"]),
        ("possible coin lesion?", ["Nodule"], []),  # a finding's own phrase covers "coin"
        ("emphysema?", ["Emphysema"], []),
    ],
)  # fmt: skip
def test_a_finding_word_inside_something_no_model_sees_is_not_that_finding(
    vocabulary: Vocabulary, question: str, findings: list[str], unsupported: list[str]
) -> None:
    slots = extract_slots(question, vocabulary)
    assert (slots.findings, slots.unsupported_findings) == (findings, unsupported)


@pytest.mark.parametrize(
    "asking",
    [
        "should i get them bronched",
        "should i do a thoracentesis tonight",
        "should I refer to thoracic surgery?",
        "which antibiotics would u start",
        "can she go back to school monday",
        "when should we prone him",
        "should I give him another 80 of furosemide?",
        "give 40 mg iv?",
    ],
)
def test_treatment_procedures_referral_and_disposition_are_decisions(asking: str) -> None:
    intent, rule = refine("management", asking, Slots())
    assert intent == "out_of_scope" and rule.startswith("asks for a clinical decision")


@pytest.mark.parametrize(
    "asking", ["on antibiotics, any consolidation?", "post-op after surgery, any effusion?"]
)
def test_a_treatment_named_as_history_is_not_a_decision(asking: str) -> None:
    assert refine("ask_finding", asking, Slots(findings=["Effusion"]))[0] != "out_of_scope"


def test_a_presence_question_after_a_comma_is_the_asking_clause(vocabulary: Vocabulary) -> None:
    # the classifier reads the asking clause, and a bare presence question asks about findings
    clause = last_question("cough x3 wks, any infiltrate or consolidation")
    assert clause == "any infiltrate or consolidation"
    assert is_bare_finding_question(clause, vocabulary)
    assert last_question("given the fever and crackles is there consolidation?") == (
        "given the fever and crackles is there consolidation?")  # fmt: skip


def test_a_request_to_compare_before_the_question_asks_for_a_comparison(
    vocabulary: Vocabulary, reader: QuestionReader
) -> None:
    understanding = read(reader, vocabulary, "pls compare w prior. has the nodule grown?",
                         "ask_finding")  # fmt: skip
    assert understanding.target.kind == "change" and understanding.target.subject == "Nodule"


def test_lobes_either_or_ask_for_a_side_not_yes_or_no(vocabulary: Vocabulary,
                                                      reader: QuestionReader) -> None:
    focus = DialogueFocus(findings=[FocusFinding(name="Pneumonia", evidence=[])],
                          intent="ask_finding", questions=["?pna"])  # fmt: skip
    question = reader.normalise("RLL or LLL?")
    slots, clause, asked = question_slots(question, vocabulary, reader)
    understood = resolve(Understanding(intent="detect_findings", confidence=0.4, slots=slots,
                                       method="test", cleaned=question), focus)  # fmt: skip
    target = reader.target(question, understood.intent, understood.slots, clause=asked)
    assert understood.intent == "localize" and target.kind == "side" and not target.closed
