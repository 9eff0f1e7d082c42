"""The composer writes cited claims from every tool's evidence, focused on the question, with
certainty words from the documented table; the verifier accepts every claim it writes."""

import pytest

from radpilot.agent.composer import Composer
from radpilot.agent.ledger import by_id
from radpilot.agent.planner import TurnView
from radpilot.agent.types import Intent, Slots, StudyRef, Understanding
from radpilot.agent.understanding import Vocabulary
from radpilot.agent.verifier import Verifier
from radpilot.agent.wording import certainty_of
from radpilot.core.contracts import Citation, Evidence

STUDY = "st_a"
ROWS = [  # name, probability, threshold, status (as classify_findings writes them)
    ("Pneumothorax", 0.22, 0.06, "present"),
    ("Effusion", 0.81, 0.40, "present"),
    ("Atelectasis", 0.35, 0.30, "uncertain"),
    ("Nodule", 0.05, 0.10, "absent"),
    ("Mass", 0.12, 0.14, "uncertain"),
    ("Edema", 0.30, 0.20, "present"),
    ("Consolidation", 0.25, 0.15, "present"),
    ("Infiltration", 0.45, 0.35, "present"),
]
CLASSIFICATION = Evidence(
    id="E1", kind="model_output", tool="classify_findings", inputs={"study_id": STUDY},
    values={"findings": [{"name": n, "probability": p, "threshold": t, "status": s}
                         for n, p, t, s in ROWS]},
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
    ("probability", "threshold", "word"),
    [(0.22, 0.06, "possible"), (0.81, 0.40, "likely"), (0.5, 0.3, "likely"),
     (0.49, 0.3, "possible"), (0.05, 0.10, "unlikely"), (0.55, 0.6, "unlikely"),
     (0.06, 0.06, "possible")],
)  # fmt: skip
def test_the_certainty_table(probability: float, threshold: float, word: str) -> None:
    assert certainty_of(probability, threshold) == word


def test_never_likely_at_a_low_probability(verifier: Verifier, composer: Composer) -> None:
    texts = verified(verifier, composer, view("ask_finding", ["E1"], ("Pneumothorax",)))
    assert texts[0].startswith("Pneumothorax is possible but not likely (model probability 0.22")


def test_a_single_finding_question_answers_that_finding_first(
    verifier: Verifier, composer: Composer
) -> None:
    texts = verified(verifier, composer, view("ask_finding", ["E1"], ("Nodule",)))
    assert texts[0].startswith("Nodule is unlikely")
    # Only an urgent finding above its operating point joins it; the rest stay in the table.
    assert len(texts) == 2 and texts[1].startswith("Pneumothorax is possible")
    assert not any("Effusion" in t or "Edema" in t for t in texts)


def test_an_open_read_ranks_what_is_present_then_one_line(
    verifier: Verifier, composer: Composer
) -> None:
    texts = verified(verifier, composer, view("detect_findings", ["E1"]))
    assert texts[0].startswith("Effusion is likely")
    assert [t.split(" is ")[0] for t in texts[:4]] == ["Effusion", "Infiltration", "Atelectasis",
                                                       "Edema"]  # fmt: skip
    assert texts[4].startswith("Also considered") and "Mass (0.12)" in texts[4]
    assert len(texts) == 5


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
