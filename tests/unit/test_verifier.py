"""The grounding verifier must catch deliberately wrong claims."""

import pytest

from radpilot.agent.composer import templates
from radpilot.agent.types import Answer, Claim, FindingRow, StudyRef
from radpilot.agent.understanding import Vocabulary
from radpilot.agent.verifier import Verifier
from radpilot.core.contracts import Evidence

CURRENT, PRIOR = "st_current", "st_prior"
STUDIES = [StudyRef(study_id=CURRENT), StudyRef(study_id=PRIOR, role="prior")]


def classification(evidence_id: str, study: str, effusion: float, status: str) -> Evidence:
    return Evidence(
        id=evidence_id, kind="model_output", tool="classify_findings",
        inputs={"study_id": study},
        values={"findings": [
            {"name": "Effusion", "probability": effusion, "threshold": 0.41, "status": status},
            {"name": "Pneumothorax", "probability": 0.03, "threshold": 0.2, "status": "absent"},
        ]},
    )  # fmt: skip


LEDGER = {
    "E1": classification("E1", CURRENT, 0.7312, "present"),
    "E2": Evidence(
        id="E2",
        kind="model_output",
        tool="localize_finding",
        inputs={"study_id": CURRENT, "finding": "Effusion"},
        values={
            "finding": "Effusion",
            "regions": [
                {
                    "box": [300.0, 310.5, 120.2, 90.0],
                    "peak": [350, 360],
                    "heat": 1.0,
                    "side": "left",
                }
            ],
        },
    ),  # fmt: skip
    "E3": classification("E3", PRIOR, 0.2, "absent"),
}


@pytest.fixture(scope="module")
def verifier() -> Verifier:
    return Verifier(Vocabulary())


def check(
    verifier: Verifier, text: str, evidence: list[str], certainty: str = "likely"
) -> str | None:
    claim = Claim(text=text, evidence=evidence, certainty=certainty)  # type: ignore[arg-type]
    return verifier.check(claim, LEDGER, STUDIES)


def test_a_faithful_claim_passes(verifier: Verifier) -> None:
    text = "Effusion is likely (model probability 0.73; decision threshold 0.41)."
    assert check(verifier, text, ["E1"]) is None


def test_a_wrong_number_is_caught(verifier: Verifier) -> None:
    text = "Effusion is likely (model probability 0.93; decision threshold 0.41)."
    assert "0.93" in (check(verifier, text, ["E1"]) or "")


def test_a_wrong_direction_is_caught(verifier: Verifier) -> None:
    reason = check(verifier, "Pneumothorax is likely (model probability 0.03).", ["E1"])
    assert reason is not None and "absent" in reason


def test_a_finding_not_in_the_evidence_is_caught(verifier: Verifier) -> None:
    assert "Nodule" in (check(verifier, "A nodule is likely.", ["E1"]) or "")


def test_the_wrong_side_is_caught(verifier: Verifier) -> None:
    ok = "The model's evidence for Effusion is strongest in the patient's left lower zone."
    assert check(verifier, ok, ["E2"], "possible") is None
    wrong = ok.replace("left", "right")
    assert "laterality" in (check(verifier, wrong, ["E2"], "possible") or "")
    assert "laterality" in (check(verifier, "Effusion is likely on the left.", ["E1"]) or "")


def test_an_invented_prior_is_caught(verifier: Verifier) -> None:
    reason = check(verifier, "Effusion is likely and new since the prior film.", ["E1"])
    assert reason is not None and "prior" in reason
    supported = "On the prior study, Effusion has model probability 0.20 (absent)."
    assert check(verifier, supported, ["E3"], "unlikely") is None


def test_citations_must_exist_and_guidelines_need_guideline_evidence(verifier: Verifier) -> None:
    assert "not in this session" in (check(verifier, "Effusion is likely.", ["E9"]) or "")
    reason = check(verifier, "BTS guidelines recommend drainage of this effusion.", ["E1"])
    assert reason is not None and "guideline" in reason
    assert "cites no evidence" in (check(verifier, "Effusion is likely.", []) or "")


def test_fixed_statements_pass_only_verbatim(verifier: Verifier) -> None:
    statement = templates()["no_prior"]
    assert check(verifier, statement, [], "stated") is None
    assert check(verifier, statement + " The effusion is new.", [], "stated") is not None


def test_verify_removes_and_counts(verifier: Verifier) -> None:
    answer = Answer(
        claims=[
            Claim(text="Effusion is likely (model probability 0.73).", evidence=["E1"],
                  certainty="likely"),
            Claim(text="Effusion is likely (model probability 0.99).", evidence=["E1"],
                  certainty="likely"),
        ],
        findings=[FindingRow(name="Effusion", probability=0.7312, status="present",
                             evidence=["E1"]),
                  FindingRow(name="Pneumothorax", probability=0.9, status="present",
                             evidence=["E1"])],
    )  # fmt: skip
    verified, report = verifier.verify(answer, LEDGER, STUDIES)
    assert [c.text for c in verified.claims] == ["Effusion is likely (model probability 0.73)."]
    assert [f.name for f in verified.findings] == ["Effusion"]
    assert report.checked == 2 and len(report.removed) == 1
    assert "1 statement(s) were removed" in verified.limitations[0]


GUIDELINE = Evidence(
    id="E9", kind="guideline", tool="search_guidelines", inputs={"query": "effusion"},
    values={"passages": [{
        "note_id": "eff-x", "text": "An exudate has a high protein ratio. Transudates do not.",
        "citation": {"document": "BTS Guideline for Pleural Disease", "issuing_body":
                     "British Thoracic Society", "year": 2023, "section": "Effusion"},
    }]},
)  # fmt: skip


def guideline_claim(verifier: Verifier, text: str) -> str | None:
    claim = Claim(text=text, evidence=["E9"], certainty="stated")
    return verifier.check(claim, {**LEDGER, "E9": GUIDELINE}, STUDIES)


def test_a_guideline_claim_must_quote_its_passage_and_name_its_source(verifier: Verifier) -> None:
    source = templates()["guideline_source"].format(
        body="British Thoracic Society", document="BTS Guideline for Pleural Disease", year=2023
    )
    assert guideline_claim(verifier, f"{source}: An exudate has a high protein ratio.") is None
    altered = f"{source}: An exudate has a low protein ratio."
    assert guideline_claim(verifier, altered) == "does not quote the cited guideline passage"
    wrong_source = "NICE, Pneumonia in adults (2014): An exudate has a high protein ratio."
    assert guideline_claim(verifier, wrong_source) is not None
    assert guideline_claim(verifier, "An exudate has a high protein ratio.") is not None
