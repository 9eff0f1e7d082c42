"""The composer writes cited claims from every tool's evidence, focused on the question, with
certainty words from the documented table (each finding's rule-out and rule-in points); the
verifier accepts every claim it writes."""

import pytest

from radpilot.agent.composer import Composer
from radpilot.agent.ledger import by_id
from radpilot.agent.planner import TurnView
from radpilot.agent.types import Intent, Slots, StudyRef, Understanding
from radpilot.agent.understanding import Vocabulary
from radpilot.agent.verifier import Verifier
from radpilot.agent.wording import answer_word, heart_size_certainty, row_certainty
from radpilot.core.contracts import Citation, Evidence
from radpilot.core.findings import OperatingPoint

STUDY = "st_a"
ROWS = [  # name, probability, Youden threshold, rule-out, rule-in (status from the last two)
    ("Pneumothorax", 0.22, 0.06, 0.03, 0.15),  # present at 0.22: its rule-in point decides
    ("Effusion", 0.81, 0.40, 0.20, 0.55),
    ("Atelectasis", 0.35, 0.30, 0.15, 0.45),  # indeterminate
    ("Nodule", 0.05, 0.10, 0.08, 0.30),  # absent
    ("Mass", 0.12, 0.14, 0.10, 0.30),  # indeterminate
    ("Edema", 0.30, 0.20, 0.10, 0.25),
    ("Consolidation", 0.25, 0.15, 0.08, 0.20),
    ("Infiltration", 0.45, 0.35, 0.25, 0.60),  # indeterminate near even odds
]


def classifier_row(name: str, probability: float, threshold: float, rule_out: float,
                   rule_in: float) -> dict[str, object]:  # fmt: skip
    """A row as classify_findings writes it: its status follows its two operating points."""
    status = OperatingPoint(rule_out=rule_out, rule_in=rule_in).band(probability)
    return {"name": name, "probability": probability, "threshold": threshold,
            "rule_out": rule_out, "rule_in": rule_in, "status": status}  # fmt: skip


CLASSIFICATION = Evidence(
    id="E1", kind="model_output", tool="classify_findings", inputs={"study_id": STUDY},
    values={"findings": [classifier_row(*row) for row in ROWS]},
)  # fmt: skip
CITATION = Citation(document="Pleural disease guideline", issuing_body="BTS", year=2023)
GRAPH = Evidence(
    id="E2", kind="guideline", tool="knowledge_graph", inputs={"finding": "Effusion"},
    values={
        "finding": "Effusion",
        "differentials": [
            {"name": "Heart failure", "notes": ["eff-1"], "next_steps": []},
            {"name": "Parapneumonic effusion", "notes": ["eff-2"], "next_steps": []},
        ],
        "next_steps": [{"text": "Pleural ultrasound before any aspiration", "notes": ["eff-1"]}],
        "citations": {"eff-1": CITATION.model_dump(), "eff-2": CITATION.model_dump()},
    },
)  # fmt: skip
CASES = Evidence(
    id="E3", kind="case", tool="similar_cases", inputs={"study_id": STUDY, "k": 3},
    values={"cases": [{"source": "nih_image", "case_id": "00001234_000.png", "similarity": 0.91,
                       "labels": ["Effusion"], "text": None, "licence": "CC0"}],
            "note": "reference cases, not evidence about this patient"},
)  # fmt: skip
ANATOMY = Evidence(
    id="E4", kind="model_output", tool="segment_anatomy", inputs={"study_id": STUDY},
    values={"study_id": STUDY, "image_size": [1024, 1024], "structures": [
        {"name": n, "area": {"pixels": a, "mm2": None}, "box": [0, 0, 10, 10],
         "mask_artefact": "ar_x", "method": "starter U-Net"}
        for n, a in [("right lung", 120000), ("left lung", 100000), ("heart", 60000)]
    ]},
)  # fmt: skip
REGION = Evidence(
    id="E5", kind="model_output", tool="segment_region",
    inputs={"study_id": STUDY, "box": [100.0, 200.0, 80.0, 60.0]},
    values={"study_id": STUDY, "area": {"pixels": 3150, "mm2": None}, "box": [104, 203, 70, 55],
            "score": 0.934, "encoder_cached": False, "mask_artefact": "ar_m"},
)  # fmt: skip
LEDGER = [CLASSIFICATION, GRAPH, CASES, ANATOMY, REGION]


def view(intent: Intent, turn: list[str], findings: tuple[str, ...] = ()) -> TurnView:
    return TurnView(
        question="q", step=1, ledger=LEDGER, turn_evidence=turn,
        studies=[StudyRef(study_id=STUDY)],
        understanding=Understanding(intent=intent, confidence=1.0, method="test",
                                    slots=Slots(findings=list(findings))),
        available_tools=["classify_findings", "knowledge_graph", "similar_cases",
                         "segment_anatomy", "segment_region", "search_guidelines"],
    )  # fmt: skip


@pytest.fixture(scope="module")
def composer() -> Composer:
    return Composer()


@pytest.fixture(scope="module")
def verifier() -> Verifier:
    return Verifier(Vocabulary())


def verified(verifier: Verifier, composer: Composer, planner_view: TurnView) -> list[str]:
    answer = composer.compose(planner_view, [])
    checked, report = verifier.verify(answer, by_id(LEDGER), planner_view.studies)
    assert report.removed == [], report.removed  # the composer writes only what is supported
    return [claim.text for claim in checked.claims]


@pytest.mark.parametrize(
    ("probability", "status", "word"),
    [(0.81, "present", "likely"), (0.22, "present", "likely"), (0.45, "indeterminate", "possible"),
     (0.12, "indeterminate", "possible"), (0.05, "absent", "unlikely"),
     (0.60, "absent", "unlikely")],
)  # fmt: skip
def test_the_certainty_word_is_the_rows_status(probability: float, status: str, word: str) -> None:
    """The table in wording.py: the status against the two operating points decides, never the
    probability alone (a row is "likely" at 0.22 when that is above its rule-in point)."""
    row = {"name": "Effusion", "probability": probability, "status": status}
    assert row_certainty(row) == word


@pytest.mark.parametrize(
    ("certainty", "polarity", "word"),
    [("likely", "abnormal", "yes"), ("possible", "abnormal", "possibly"),
     ("unlikely", "abnormal", "no"), ("likely", "normal", "no"), ("possible", "normal", "possibly"),
     ("unlikely", "normal", "yes")],
)  # fmt: skip
def test_the_answer_word_follows_the_certainty_and_the_questions_polarity(
    certainty: str, polarity: str, word: str
) -> None:
    # "Is there an effusion?" (abnormal) and "is the heart size normal?" (normal) swap Yes and No.
    assert answer_word(certainty, polarity) == word  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("classifier", "ratio", "view", "expected"),
    [
        ("unlikely", None, "PA", "unlikely"),  # no measurement: the classifier decides
        ("likely", None, "AP", "likely"),
        ("unlikely", 0.58, "PA", "possible"),  # a clearly enlarged ratio on a PA film disagrees
        ("unlikely", 0.55, "pa", "possible"),  # at the bound, whatever the case of the view
        ("unlikely", 0.54, "PA", "unlikely"),  # not clearly enlarged
        ("unlikely", 0.62, "AP", "unlikely"),  # AP magnifies the heart: the ratio cannot argue
        ("unlikely", 0.62, "UNKNOWN", "possible"),
        ("likely", 0.40, "PA", "possible"),  # a clearly normal ratio disagrees
        ("likely", 0.40, "AP", "possible"),  # ... on any film
        ("likely", 0.45, "PA", "likely"),  # not clearly normal
        ("likely", 0.70, "PA", "likely"),  # agreeing ratios change nothing
        ("possible", 0.60, "PA", "likely"),  # an indeterminate model: a clear ratio decides
        ("possible", 0.48, "AP", "unlikely"),  # a normal ratio on any film
        ("possible", 0.70, "AP", "possible"),  # ... but AP magnification never calls enlargement
        ("possible", 0.59, "PA", "possible"),  # between the bounds the ratio is not clear
        ("possible", 0.49, "PA", "possible"),
    ],
)
def test_heart_size_reads_the_classifier_and_the_measured_ratio_together(
    classifier: str, ratio: float | None, view: str, expected: str
) -> None:
    assert heart_size_certainty(classifier, ratio, view) == expected  # type: ignore[arg-type]


def test_likely_follows_the_rule_in_point_not_even_odds(
    verifier: Verifier, composer: Composer
) -> None:
    texts = verified(verifier, composer, view("ask_finding", ["E1"], ("Pneumothorax",)))
    assert texts[0] == ("Pneumothorax is likely (model probability 0.22; at or above its rule-in "
                        "point 0.15).")  # fmt: skip
    texts = verified(verifier, composer, view("ask_finding", ["E1"], ("Infiltration",)))
    assert texts[0] == ("Infiltration is indeterminate (model probability 0.45, between its "
                        "rule-out point 0.25 and rule-in point 0.60).")  # fmt: skip


def test_a_single_finding_question_answers_that_finding_first(
    verifier: Verifier, composer: Composer
) -> None:
    texts = verified(verifier, composer, view("ask_finding", ["E1"], ("Nodule",)))
    assert texts[0] == "Nodule is unlikely (model probability 0.05; below its rule-out point 0.08)."
    # Only an urgent finding at or above its rule-in point joins it; the rest stay in the table.
    assert len(texts) == 2 and texts[1].startswith("Pneumothorax is likely")
    assert not any("Effusion" in t or "Edema" in t for t in texts)


def test_an_indeterminate_urgent_finding_does_not_join_a_focused_answer(
    verifier: Verifier, composer: Composer
) -> None:
    rows = [classifier_row("Pneumothorax", 0.12, 0.06, 0.03, 0.15),
            classifier_row("Nodule", 0.05, 0.10, 0.08, 0.30)]  # fmt: skip
    evidence = CLASSIFICATION.model_copy(update={"values": {"findings": rows}})
    focused = view("ask_finding", ["E1"], ("Nodule",)).model_copy(update={"ledger": [evidence]})
    answer = composer.compose(focused, [])
    assert [c.text.split(" is ")[0] for c in answer.claims] == ["Nodule"]


def test_an_open_read_ranks_what_is_present_then_one_line(
    verifier: Verifier, composer: Composer
) -> None:
    texts = verified(verifier, composer, view("detect_findings", ["E1"]))
    assert texts[0].startswith("Effusion is likely")
    assert [t.split(" is ")[0] for t in texts[:4]] == ["Effusion", "Edema", "Consolidation",
                                                       "Pneumothorax"]  # fmt: skip
    # What is indeterminate goes in one line, most probable first; what is absent is left out.
    assert texts[4] == ("Also considered, each less probable (model probability): "
                        "Infiltration (0.45), Atelectasis (0.35), Mass (0.12).")  # fmt: skip
    assert len(texts) == 5


def test_an_open_read_with_nothing_at_rule_in_says_so(
    verifier: Verifier, composer: Composer
) -> None:
    rows = [classifier_row("Atelectasis", 0.35, 0.30, 0.15, 0.45),
            classifier_row("Nodule", 0.05, 0.10, 0.08, 0.30)]  # fmt: skip
    evidence = CLASSIFICATION.model_copy(update={"values": {"findings": rows}})
    read = view("detect_findings", ["E1"]).model_copy(update={"ledger": [evidence]})
    answer = composer.compose(read, [])
    assert [c.text for c in answer.claims] == [
        "No finding reaches its rule-in point on this image.",
        "Also considered, each less probable (model probability): Atelectasis (0.35).",
    ]
    _, report = verifier.verify(answer, {"E1": evidence}, read.studies)
    assert report.removed == []


def test_differential_and_next_steps_cite_the_graph(verifier: Verifier, composer: Composer) -> None:
    texts = verified(verifier, composer, view("differential", ["E2"], ("Effusion",)))
    assert texts[0].startswith("Differential diagnoses linked to Effusion")
    assert "Heart failure; Parapneumonic effusion" in texts[0] and "BTS (2023)" in texts[0]
    steps = verified(verifier, composer, view("management", ["E2"], ("Effusion",)))
    assert steps[0].startswith("Next steps linked to Effusion")


def test_an_altered_graph_claim_is_removed(verifier: Verifier, composer: Composer) -> None:
    answer = composer.compose(view("differential", ["E2"], ("Effusion",)), [])
    answer.claims[0].text = answer.claims[0].text.replace("Heart failure", "Lymphoma")
    _, report = verifier.verify(answer, by_id(LEDGER), [StudyRef(study_id=STUDY)])
    assert len(report.removed) == 1


def test_similar_cases_are_cited_as_reference_cases(verifier: Verifier, composer: Composer) -> None:
    texts = verified(verifier, composer, view("similar_cases", ["E3"]))
    assert texts == ["Reference case, not this patient: NIH image 00001234_000.png "
                     "(similarity 0.91), labelled Effusion."]  # fmt: skip


def test_anatomy_and_region_claims(verifier: Verifier, composer: Composer) -> None:
    anatomy = verified(verifier, composer, view("segment_anatomy", ["E4"]))
    assert anatomy[0].startswith("Segmented anatomy: right lung 120000 px")
    region = verified(verifier, composer, view("segment_region", ["E5"]))
    assert "mask area 3150 px" in region[0] and "0.93" in region[0]


def test_a_question_whose_tool_produced_nothing_says_so(composer: Composer) -> None:
    answer = composer.compose(view("segment_region", []), [])
    assert answer.claims[0].certainty == "stated" and "no localized region" in answer.claims[0].text
    answer = composer.compose(view("differential", []), [])
    assert "which finding you mean" in answer.claims[0].text


def test_how_sure_after_general_knowledge_explains_the_finding_in_focus(
    verifier: Verifier, composer: Composer
) -> None:
    from radpilot.agent.types import DialogueFocus, FocusFinding, Message

    steps = composer.compose(view("management", ["E2"], ("Effusion",)), [])
    history = [Message(role="user", text="what should we do?"),
               Message(role="assistant", text="", answer=steps)]  # fmt: skip
    sure = view("explain", []).model_copy(update={"focus": DialogueFocus(
        findings=[FocusFinding(name="Effusion", evidence=["E1"])])})  # fmt: skip
    answer = composer.compose(sure, history)
    assert answer.claims[0].text.startswith("Effusion is likely (model probability 0.81")
    assert "from classify_findings" in answer.claims[0].text
    checked, report = verifier.verify(answer, by_id(LEDGER), sure.studies)
    assert report.removed == [] and checked.claims == answer.claims
