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
    """Effusion's status is given (rule-out 0.15, rule-in 0.41); Pneumothorax is absent and
    Atelectasis indeterminate."""
    return Evidence(
        id=evidence_id, kind="model_output", tool="classify_findings",
        inputs={"study_id": study},
        values={"findings": [
            {"name": "Effusion", "probability": effusion, "threshold": 0.3, "rule_out": 0.15,
             "rule_in": 0.41, "status": status},
            {"name": "Pneumothorax", "probability": 0.03, "threshold": 0.2, "rule_out": 0.05,
             "rule_in": 0.3, "status": "absent"},
            {"name": "Atelectasis", "probability": 0.18, "threshold": 0.2, "rule_out": 0.1,
             "rule_in": 0.35, "status": "indeterminate"},
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
    "E3": classification("E3", PRIOR, 0.1, "absent"),
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
    text = "Effusion is likely (model probability 0.73; at or above its rule-in point 0.41)."
    assert check(verifier, text, ["E1"]) is None
    text = ("Atelectasis is indeterminate (model probability 0.18, between its rule-out point 0.10 "
            "and rule-in point 0.35).")  # fmt: skip
    assert check(verifier, text, ["E1"], "possible") is None


def test_a_wrong_number_is_caught(verifier: Verifier) -> None:
    text = "Effusion is likely (model probability 0.93; at or above its rule-in point 0.41)."
    assert "0.93" in (check(verifier, text, ["E1"]) or "")
    text = "Effusion is likely (model probability 0.73; at or above its rule-in point 0.45)."
    assert "0.45" in (check(verifier, text, ["E1"]) or "")


def test_the_certainty_must_match_the_band(verifier: Verifier) -> None:
    likely = "Atelectasis is likely (model probability 0.18)."
    assert "uncertain" in (check(verifier, likely, ["E1"]) or "")
    wrong_certainty = "Atelectasis is indeterminate (model probability 0.18)."
    assert "certainty" in (check(verifier, wrong_certainty, ["E1"], "likely") or "")


# --- the direct answer's first word --------------------------------------------------------

YES_EFFUSION = ("Yes: Effusion is likely (model probability 0.73; at or above its rule-in point "
                "0.41).")  # fmt: skip
NO_PNEUMOTHORAX = ("No: Pneumothorax is unlikely (model probability 0.03; below its rule-out "
                   "point 0.05).")  # fmt: skip
POSSIBLY_ATELECTASIS = ("Possibly: Atelectasis is indeterminate (model probability 0.18, "
                        "between its rule-out point 0.10 and rule-in point 0.35).")  # fmt: skip


def answering(verifier: Verifier, text: str, certainty: str, answers: str | None,
              evidence: tuple[str, ...] = ("E1",)) -> str | None:  # fmt: skip
    claim = Claim(text=text, evidence=list(evidence), certainty=certainty,  # type: ignore[arg-type]
                  answers=answers)  # type: ignore[arg-type]  # fmt: skip
    return verifier.check(claim, LEDGER, STUDIES)


@pytest.mark.parametrize(
    ("text", "certainty", "answers"),
    [(YES_EFFUSION, "likely", "yes"), (NO_PNEUMOTHORAX, "unlikely", "no"),
     (POSSIBLY_ATELECTASIS, "possible", "possibly"),
     ("Yes, within normal limits: Pneumothorax is unlikely (model probability 0.03; below its "
      "rule-out point 0.05).", "unlikely", "yes"),
     ("No, not within normal limits: Effusion is likely (model probability 0.73; at or above its "
      "rule-in point 0.41).", "likely", "no")],
)  # fmt: skip
def test_a_correct_direct_answer_passes(
    verifier: Verifier, text: str, certainty: str, answers: str
) -> None:
    assert answering(verifier, text, certainty, answers) is None
    assert answering(verifier, text, certainty, None) is None  # the words alone are checked too


@pytest.mark.parametrize(
    ("text", "certainty", "reason"),
    [
        # Yes only at or above rule-in: not for an absent or an indeterminate finding
        ("Yes: Pneumothorax is unlikely (model probability 0.03; below its rule-out point 0.05).",
         "unlikely", "answers yes but the evidence says no"),
        ("Yes: Atelectasis is indeterminate (model probability 0.18, between its rule-out point "
         "0.10 and rule-in point 0.35).", "possible", "answers yes but the evidence says possibly"),
        # No only below rule-out
        ("No: Effusion is likely (model probability 0.73; at or above its rule-in point 0.41).",
         "likely", "answers no but the evidence says yes"),
        ("No: Atelectasis is indeterminate (model probability 0.18, between its rule-out point "
         "0.10 and rule-in point 0.35).", "possible", "answers no but the evidence says possibly"),
        # Possibly only in between
        ("Possibly: Effusion is likely (model probability 0.73; at or above its rule-in point "
         "0.41).", "likely", "answers possibly but the evidence says yes"),
        # a question of normal polarity swaps Yes and No
        ("Yes, within normal limits: Effusion is likely (model probability 0.73; at or above its "
         "rule-in point 0.41).", "likely", "answers yes but the evidence says no"),
    ],
)  # fmt: skip
def test_a_wrong_first_word_is_caught(
    verifier: Verifier, text: str, certainty: str, reason: str
) -> None:
    assert answering(verifier, text, certainty, None) == reason


def test_the_first_word_must_be_the_word_the_claim_answers(verifier: Verifier) -> None:
    assert answering(verifier, YES_EFFUSION, "likely", "no") == "begins 'Yes' but answers no"
    plain = YES_EFFUSION.removeprefix("Yes: ")
    assert answering(verifier, plain, "likely", "yes") == (
        "a direct answer must begin Yes, No, Possibly or I cannot assess")  # fmt: skip


def test_a_normality_answer_is_checked_against_every_finding(verifier: Verifier) -> None:
    clear = ("Yes, within normal limits: no acute finding is above the models' operating points "
             "(every finding is below its rule-out point), within the limits of the installed "
             "models.")  # fmt: skip
    # E1 holds a present effusion: "normal" is wrong
    assert answering(verifier, clear, "unlikely", "yes") == "answers yes but the evidence says no"
    nothing = Evidence(id="E5", kind="model_output", tool="classify_findings",
                       inputs={"study_id": CURRENT}, values={"findings": [
                           {"name": "Pneumothorax", "probability": 0.03, "threshold": 0.2,
                            "rule_out": 0.05, "rule_in": 0.3, "status": "absent"}]})  # fmt: skip
    claim = Claim(text=clear, evidence=["E5"], certainty="unlikely", answers="yes")
    assert verifier.check(claim, {**LEDGER, "E5": nothing}, STUDIES) is None


def test_a_cited_localization_does_not_license_a_wrong_yes(verifier: Verifier) -> None:
    """A side answer cites the classification and a localization; the side is checked by the
    laterality rule, but "Yes" still needs the finding at or above its rule-in point. The
    verifier skipped the first-word check whenever any localization was cited (even one of
    another finding), so "Yes" passed for an indeterminate or absent finding."""
    indeterminate = ("Yes: Atelectasis is indeterminate (model probability 0.18, between its "
                     "rule-out point 0.10 and rule-in point 0.35).")  # fmt: skip
    assert answering(verifier, indeterminate, "possible", "yes", ("E1", "E2")) is not None, (
        "'Yes' accepted for an indeterminate finding because a localization was cited")
    absent = ("Yes: Pneumothorax is unlikely (model probability 0.03; below its rule-out point "
              "0.05).")  # fmt: skip
    assert answering(verifier, absent, "unlikely", "yes", ("E1", "E2")) is not None, (
        "'Yes' accepted for an absent finding because a localization was cited")
    # a correct side answer still passes
    side = (f"{YES_EFFUSION} The model's evidence for Effusion is strongest in the patient's "
            "left lower zone.")  # fmt: skip
    assert answering(verifier, side, "likely", "yes", ("E1", "E2")) is None


def test_a_direct_answer_stands_only_while_its_claim_does(verifier: Verifier) -> None:
    from radpilot.agent.types import DirectAnswer

    wrong = Claim(text=YES_EFFUSION.replace("Yes", "No", 1), evidence=["E1"], certainty="likely",
                  answers="no")  # fmt: skip
    kept = Claim(text=NO_PNEUMOTHORAX, evidence=["E1"], certainty="unlikely", answers="no")
    identity = DirectAnswer(word=None, target="identity", subject="date of birth")
    answer = Answer(claims=[wrong], direct=[
        DirectAnswer(word="no", target="finding", subject="Effusion"), identity])  # fmt: skip
    verified, report = verifier.verify(answer, LEDGER, STUDIES)
    assert verified.claims == [] and len(report.removed) == 1
    assert verified.direct == [identity]  # a direct answer without a word is not a claim's
    answer = Answer(claims=[kept], direct=[
        DirectAnswer(word="no", target="finding", subject="Pneumothorax")])  # fmt: skip
    assert verifier.verify(answer, LEDGER, STUDIES)[0].direct == answer.direct


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
    supported = "On the prior study, Effusion has model probability 0.10 (absent)."
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
