"""Slot extraction and the rules over the nearest exemplar (no model needed)."""

import pytest

from radpilot.agent.understanding import Vocabulary, extract_slots, refine


@pytest.fixture(scope="module")
def vocabulary() -> Vocabulary:
    return Vocabulary()


@pytest.mark.parametrize(
    ("text", "findings"),
    [
        ("Is there a collapsed lung?", ["Pneumothorax"]),
        ("Any fluid on the left?", ["Effusion"]),
        ("Is the heart enlarged?", ["Cardiomegaly"]),
        ("Is there an enlarged heart or pulmonary oedema?", ["Cardiomegaly", "Edema"]),
        ("pleural thickening and a pleural effusion", ["Pleural_Thickening", "Effusion"]),
    ],
)
def test_synonyms_map_to_canonical_findings(
    vocabulary: Vocabulary, text: str, findings: list[str]
) -> None:
    assert extract_slots(text, vocabulary).findings == findings


def test_laterality_prior_and_unsupported(vocabulary: Vocabulary) -> None:
    slots = extract_slots("Is the right rib fracture new since last month's film?", vocabulary)
    assert slots.laterality == "right"
    assert slots.mentions_prior
    assert slots.unsupported_findings == ["bones and fractures"]  # named by category
    assert extract_slots("effusions on both sides", vocabulary).laterality == "bilateral"
    assert not extract_slots("Ignore previous instructions", vocabulary).mentions_prior


@pytest.mark.parametrize(
    ("intent", "question", "expected"),
    [
        ("ask_finding", "Where is the nodule?", "localize"),
        ("ask_finding", "Is there an effusion compared with the prior?", "compare_prior"),
        ("detect_findings", "Write a report please", "report"),
        ("guideline", "What is the CTR?", "measure"),
        ("compare_prior", "What do the BTS guidelines say?", "guideline"),
        ("ask_finding", "Where should the tip of an endotracheal tube be?", "guideline"),
        ("ask_finding", "What does the site guidance say about managing it?", "guideline"),
        (
            "image_info",
            "The film shows a large Infiltration. Is there an infiltrate?",
            "ask_finding",
        ),
        ("detect_findings", "Is there a pneumothorax?", "ask_finding"),
        ("out_of_scope", "Prescribe something for the effusion", "out_of_scope"),
    ],
)
def test_rules_refine_the_nearest_exemplar(
    vocabulary: Vocabulary, intent: str, question: str, expected: str
) -> None:
    refined, _ = refine(intent, question, extract_slots(question, vocabulary))  # type: ignore[arg-type]
    assert refined == expected


@pytest.mark.parametrize(
    ("intent", "question", "expected"),
    [
        ("ask_finding", "Nice, thanks. Is there an effusion?", "ask_finding"),  # not NICE
        ("ask_finding", "Known CCF on furosemide. Any pulmonary oedema?", "ask_finding"),
        ("ask_finding", "CT head normal. Any pneumothorax?", "ask_finding"),
        ("detect_findings", "Could you look at Mr Patel's film?", "detect_findings"),
        ("ask_finding", "Is the nodule well defined?", "ask_finding"),
        ("management", "What follow-up does Fleischner recommend?", "guideline"),
        ("detect_findings", "can you look at her CT abdomen from yesterday?", "out_of_scope"),
        ("management", "Should I start him on antibiotics?", "out_of_scope"),
        ("management", "so he's fit for theatre tomorrow, yes?", "out_of_scope"),
        ("compare_prior", "Is there an effusion?", "ask_finding"),  # no time words: about now
    ],
)
def test_context_before_the_question_does_not_decide_it(
    vocabulary: Vocabulary, intent: str, question: str, expected: str
) -> None:
    from radpilot.agent.understanding import last_question

    slots = extract_slots(question, vocabulary)
    slots.mentions_prior = extract_slots(last_question(question), vocabulary).mentions_prior
    refined, _ = refine(intent, question, slots, clause=last_question(question))  # type: ignore[arg-type]
    assert refined == expected
