"""The direct answer (DESIGN.md "Answers"): a closed question's first claim is Yes / No /
Possibly / I cannot assess, by the finding's band between its rule-out and rule-in points, the
question's polarity and, for a side, the localization; a where-question begins with the side.
Everything here is hand-built evidence: no model, no data."""

from __future__ import annotations

from typing import Any

import pytest

from radpilot.agent.composer import Composer
from radpilot.agent.direct import DirectAnswers
from radpilot.agent.ledger import by_id
from radpilot.agent.planner import ToolFailure, TurnView
from radpilot.agent.types import Answer, Intent, Slots, StudyRef, Target, Understanding
from radpilot.agent.understanding import Vocabulary
from radpilot.agent.verifier import Verifier
from radpilot.core.contracts import Evidence
from radpilot.core.findings import OperatingPoint

STUDY = "st_a"
NOT_ASSESSED = ("I cannot assess {}: none of the installed models looks at it on a chest "
                "radiograph, so I make no statement about it.")  # fmt: skip


def row(name: str, probability: float, rule_out: float, rule_in: float) -> dict[str, Any]:
    """A classify_findings row: its status follows its two operating points."""
    status = OperatingPoint(rule_out=rule_out, rule_in=rule_in).band(probability)
    return {"name": name, "probability": probability, "threshold": (rule_out + rule_in) / 2,
            "rule_out": rule_out, "rule_in": rule_in, "status": status}  # fmt: skip


ROWS = [
    row("Effusion", 0.72, 0.10, 0.40),  # present
    row("Pneumothorax", 0.20, 0.10, 0.40),  # indeterminate
    row("Nodule", 0.02, 0.05, 0.30),  # absent
    row("Cardiomegaly", 0.03, 0.08, 0.45),  # absent
    row("Atelectasis", 0.05, 0.08, 0.30),  # absent
]


def classification(rows: list[dict[str, Any]] = ROWS, evidence_id: str = "E1") -> Evidence:
    return Evidence(id=evidence_id, kind="model_output", tool="classify_findings",
                    inputs={"study_id": STUDY}, values={"findings": rows})  # fmt: skip


def localization(finding: str, side: str, evidence_id: str = "E2") -> Evidence:
    region = {"box": [600.0, 700.0, 200.0, 150.0], "peak": [700, 760], "heat": 1.0, "side": side}
    return Evidence(id=evidence_id, kind="model_output", tool="localize_finding",
                    inputs={"study_id": STUDY, "finding": finding},
                    values={"finding": finding, "regions": [region],
                            "image_size": [1024, 1024]})  # fmt: skip


def measurement(ratio: float, film: str, evidence_id: str = "E3") -> Evidence:
    heart, thorax = round(ratio * 100), 100
    values = {
        "study_id": STUDY, "view": film, "cardiothoracic_ratio": ratio,
        "heart_line": {"y": 10, "x_start": 5, "x_end": 5 + heart,
                       "length": {"pixels": heart, "mm": None}},
        "thorax_line": {"y": 12, "x_start": 1, "x_end": 1 + thorax,
                        "length": {"pixels": thorax, "mm": None}},
        "right_lung_area": {"pixels": 900, "mm2": None},
        "left_lung_area": {"pixels": 800, "mm2": None},
        "lung_area_ratio_right_to_left": 1.125, "pa_threshold": 0.5,
        "ctr_reading": "above" if ratio > 0.5 else "at or below",
        "notes": ["Measured on the segmented lung fields."],
    }  # fmt: skip
    return Evidence(id=evidence_id, kind="measurement", tool="measure",
                    inputs={"study_id": STUDY}, values=values)  # fmt: skip


def image_info(view: str, evidence_id: str = "E4", *, qc_ok: bool = True) -> Evidence:
    return Evidence(id=evidence_id, kind="model_output", tool="image_info",
                    inputs={"study_id": STUDY},
                    values={"study_id": STUDY, "modality": "DX", "width": 2048, "height": 2500,
                            "view": view, "qc_ok": qc_ok, "qc_issues": []})  # fmt: skip


def turn(target: Target, evidence: list[Evidence], *, question: str = "q",
         intent: Intent = "ask_finding", failures: list[ToolFailure] | None = None,
         studies: list[StudyRef] | None = None) -> TurnView:  # fmt: skip
    findings = [target.subject] if target.kind in ("finding", "side") and target.subject else []
    if target.kind == "heart_size" and target.closed:
        findings = ["Cardiomegaly"]
    understanding = Understanding(intent=intent, confidence=1.0, method="test",
                                  slots=Slots(findings=findings), target=target,
                                  cleaned=question)  # fmt: skip
    return TurnView(
        question=question, understanding=understanding, ledger=evidence,
        turn_evidence=[e.id for e in evidence], failures=failures or [], step=1,
        studies=[StudyRef(study_id=STUDY)] if studies is None else studies,
        available_tools=["classify_findings", "localize_finding", "measure", "image_info"],
    )  # fmt: skip


@pytest.fixture(scope="module")
def writer() -> DirectAnswers:
    return DirectAnswers()


@pytest.fixture(scope="module")
def composer() -> Composer:
    return Composer()


@pytest.fixture(scope="module")
def verifier() -> Verifier:
    return Verifier(Vocabulary())


def written(writer: DirectAnswers, view: TurnView) -> tuple[str, Any, list[str]]:
    """The direct claim's text, its word and its evidence; the summary agrees with the claim."""
    result = writer.write(view, [e for e in view.ledger if e.id in view.turn_evidence])
    assert result is not None
    claim, summary = result
    assert summary.word == claim.answers and summary.target == view.understanding.target.kind
    return claim.text, claim.answers, claim.evidence


def composed(composer: Composer, verifier: Verifier, view: TurnView) -> Answer:
    """The composer's answer, which the verifier keeps whole (direct answers included)."""
    answer = composer.compose(view, [])
    checked, report = verifier.verify(answer, by_id(view.ledger), view.studies)
    assert report.removed == [], report.removed
    assert checked.direct == answer.direct
    return answer


# --- a finding: Yes / Possibly / No by its band ------------------------------------------------


@pytest.mark.parametrize(
    ("finding", "word", "text"),
    [
        ("Effusion", "yes", "Yes: Effusion is likely (model probability 0.72; at or above its "
                            "rule-in point 0.40)."),
        ("Pneumothorax", "possibly", "Possibly: Pneumothorax is indeterminate (model probability "
                                     "0.20, between its rule-out point 0.10 and rule-in point "
                                     "0.40)."),
        ("Nodule", "no", "No: Nodule is unlikely (model probability 0.02; below its rule-out "
                         "point 0.05)."),
    ],
)  # fmt: skip
def test_a_closed_finding_question_is_answered_by_the_findings_band(
    writer: DirectAnswers, composer: Composer, verifier: Verifier, finding: str, word: str,
    text: str,
) -> None:  # fmt: skip
    view = turn(Target(kind="finding", closed=True, subject=finding), [classification()])
    assert written(writer, view) == (text, word, ["E1"])
    answer = composed(composer, verifier, view)
    assert answer.claims[0].text == text  # the answer first ...
    assert [c.text for c in answer.claims].count(text) == 1
    # ... and the plain sentence it restates is not repeated after it
    assert not any(c.text == text.split(": ", 1)[1] for c in answer.claims)
    assert [d.model_dump() for d in answer.direct] == [
        {"word": word, "target": "finding", "subject": finding, "side": None}]  # fmt: skip


def test_yes_starts_exactly_at_the_rule_in_point_and_no_below_the_rule_out_point(
    writer: DirectAnswers,
) -> None:
    words = []
    for probability in (0.0999, 0.10, 0.3999, 0.40):
        evidence = classification([row("Effusion", probability, 0.10, 0.40)])
        view = turn(Target(kind="finding", closed=True, subject="Effusion"), [evidence])
        words.append(written(writer, view)[1])
    assert words == ["no", "possibly", "possibly", "yes"]


def test_a_single_cut_answers_yes_or_no_never_possibly(writer: DirectAnswers) -> None:
    for probability, word in ((0.49, "no"), (0.5, "yes")):
        evidence = classification([row("Mass", probability, 0.5, 0.5)])
        view = turn(Target(kind="finding", closed=True, subject="Mass"), [evidence])
        assert written(writer, view)[1] == word


def test_an_open_finding_question_gets_no_direct_answer(writer: DirectAnswers) -> None:
    view = turn(Target(kind="finding", closed=False, subject="Effusion"), [classification()])
    assert writer.write(view, [classification()]) is None


def test_a_closed_question_without_a_classification_writes_nothing_unless_qc_refused(
    writer: DirectAnswers,
) -> None:
    target = Target(kind="finding", closed=True, subject="Effusion")
    assert writer.write(turn(target, []), []) is None
    refused = ToolFailure(tool="classify_findings", arguments={"study_id": STUDY},
                          code="qc_refused", message="not a frontal chest radiograph")  # fmt: skip
    text, word, evidence = written(writer, turn(target, [], failures=[refused]))
    assert word == "cannot_assess" and evidence == []
    assert text.startswith("I cannot assess this image: the quality checks refused it")


# --- heart size: the classifier and the measured ratio, polarity swapped --------------------


@pytest.mark.parametrize(
    ("probability", "polarity", "opening"),
    [
        (0.03, "normal", "Yes, within normal limits: the heart does not appear enlarged: "
                         "Cardiomegaly is unlikely (model probability 0.03; below its rule-out "
                         "point 0.08)."),
        (0.03, "abnormal", "No: the heart does not appear enlarged: Cardiomegaly is unlikely "
                           "(model probability 0.03; below its rule-out point 0.08)."),
        (0.60, "normal", "No, not within normal limits: the heart appears enlarged: Cardiomegaly "
                         "is likely (model probability 0.60; at or above its rule-in point "
                         "0.45)."),
        (0.60, "abnormal", "Yes: the heart appears enlarged: Cardiomegaly is likely (model "
                           "probability 0.60; at or above its rule-in point 0.45)."),
        (0.20, "normal", "Possibly: heart size is indeterminate: Cardiomegaly model probability "
                         "0.20 (rule-out point 0.08, rule-in point 0.45)."),
    ],
)  # fmt: skip
def test_heart_size_is_answered_with_the_questions_polarity(
    writer: DirectAnswers, composer: Composer, verifier: Verifier, probability: float,
    polarity: str, opening: str,
) -> None:  # fmt: skip
    # "Is the heart size normal?" (normal) and "is the heart enlarged?" (abnormal)
    evidence = classification([row("Cardiomegaly", probability, 0.08, 0.45)])
    target = Target(kind="heart_size", closed=True, polarity=polarity)  # type: ignore[arg-type]
    text, word, cited = written(writer, turn(target, [evidence]))
    assert text == opening and cited == ["E1"]
    assert composed(composer, verifier, turn(target, [evidence])).claims[0].text == opening


def test_a_clearly_enlarged_ratio_on_a_pa_film_makes_a_normal_heart_indeterminate(
    writer: DirectAnswers, composer: Composer, verifier: Verifier
) -> None:
    target = Target(kind="heart_size", closed=True, polarity="normal")
    view = turn(target, [classification(), measurement(0.58, "PA")])
    text, word, cited = written(writer, view)
    assert word == "possibly" and cited == ["E1", "E3"]
    assert text == ("Possibly: heart size is indeterminate: Cardiomegaly model probability 0.03 "
                    "(rule-out point 0.08, rule-in point 0.45); measured cardiothoracic ratio "
                    "0.58 on this PA film.")  # fmt: skip
    composed(composer, verifier, view)


@pytest.mark.parametrize(
    ("ratio", "view", "word", "opening"),
    [
        (0.64, "PA", "no", "No, not within normal limits: the heart appears enlarged by the "
                           "measured ratio"),
        (0.43, "AP", "yes", "Yes, within normal limits: the heart does not appear enlarged by "
                            "the measured ratio"),
        (0.64, "AP", "possibly", "Possibly: heart size is indeterminate"),
    ],
)  # fmt: skip
def test_a_clear_ratio_decides_where_the_classifier_is_indeterminate(
    writer: DirectAnswers, composer: Composer, verifier: Verifier, ratio: float, view: str,
    word: str, opening: str,
) -> None:  # fmt: skip
    target = Target(kind="heart_size", closed=True, polarity="normal")
    evidence = [classification([row("Cardiomegaly", 0.20, 0.08, 0.45)]), measurement(ratio, view)]
    text, given, cited = written(writer, turn(target, evidence))
    assert given == word and text.startswith(opening) and len(cited) == 2
    assert composed(composer, verifier, turn(target, evidence)).claims[0].text == text


def test_on_an_ap_film_the_ratio_cannot_argue_for_enlargement(writer: DirectAnswers) -> None:
    target = Target(kind="heart_size", closed=True, polarity="normal")
    text, word, cited = written(writer, turn(target, [classification(), measurement(0.58, "AP")]))
    assert word == "yes" and cited == ["E1", "E3"]
    assert "measured cardiothoracic ratio 0.58 on this AP film." in text
    assert text.endswith("On an AP film the heart is magnified, so a ratio above 0.5 does not by "
                         "itself mean enlargement.")  # fmt: skip


def test_an_open_heart_size_question_states_the_call_without_a_yes_or_no(
    writer: DirectAnswers,
) -> None:
    """ "How big is the heart?", or "... and what's the CTR?" after a finding question (the
    classification is then part of the turn): the call and the ratio, not a Yes or No to a
    question that did not ask one."""
    target = Target(kind="heart_size", closed=False)
    text, word, _ = written(writer, turn(target, [classification(), measurement(0.48, "PA")]))
    assert word is None
    assert not text.startswith(("Yes", "No", "Possibly")), (
        f"an open heart-size question is answered with a Yes/No/Possibly prefix: {text!r}")
    # "What is the CTR?" with only the measurement: its own claim answers it
    assert writer.write(turn(target, [measurement(0.48, "PA")]), [measurement(0.48, "PA")]) is None


def test_the_heart_size_answer_is_not_contradicted_by_the_plain_cardiomegaly_sentence(
    composer: Composer, verifier: Verifier
) -> None:
    """The direct answer replaces the plain sentence it restates (composer._answer_first). For
    heart size the plain sentence is the Cardiomegaly row's: with a clearly enlarged ratio the
    answer is "Possibly: heart size is indeterminate", and "Cardiomegaly is unlikely" must not
    follow it."""
    target = Target(kind="heart_size", closed=True, polarity="normal")
    answer = composed(composer, verifier, turn(target, [classification(), measurement(0.58, "PA")]))
    assert answer.claims[0].text.startswith("Possibly: heart size is indeterminate")
    repeated = [c.text for c in answer.claims[1:] if c.text.startswith("Cardiomegaly is")]
    assert repeated == [], (
        "the heart-size direct answer is followed by the plain Cardiomegaly sentence it restates "
        f"(and contradicts): {repeated}"
    )


# --- a side: agree / disagree with the localization; where-questions lead with the side -----


def test_a_side_question_that_agrees_with_the_localization_is_yes(
    writer: DirectAnswers, composer: Composer, verifier: Verifier
) -> None:
    target = Target(kind="side", closed=True, subject="Effusion", side="left")  # on the left?
    view = turn(target, [classification(), localization("Effusion", "left")], intent="localize")
    text, word, cited = written(writer, view)
    assert word == "yes" and cited == ["E1", "E2"]
    assert text == ("Yes: Effusion is likely (model probability 0.72; at or above its rule-in "
                    "point 0.40). The model's evidence for Effusion is strongest in the "
                    "patient's left lower zone (box x=600, y=700, w=200, h=150 px).")  # fmt: skip
    answer = composed(composer, verifier, view)
    assert answer.direct[0].side == "left"


def test_a_side_question_that_disagrees_with_the_localization_is_possibly_and_says_where(
    writer: DirectAnswers, composer: Composer, verifier: Verifier
) -> None:
    # The localization names the boxed side for 41 of 67 one-sided validation boxes: evidence
    # on the other side does not exclude the side asked about.
    target = Target(kind="side", closed=True, subject="Effusion", side="right")  # on the right?
    view = turn(target, [classification(), localization("Effusion", "left")], intent="localize")
    text, word, _ = written(writer, view)
    assert word == "possibly" and text.startswith("Possibly: Effusion is likely")
    assert "patient's left lower zone" in text and "does not exclude the side" in text
    answer = composed(composer, verifier, view)
    assert answer.direct[0].side == "left" and answer.claims[0].text == text


def test_a_side_question_about_an_absent_finding_is_no_without_a_side(
    writer: DirectAnswers,
) -> None:
    target = Target(kind="side", closed=True, subject="Nodule", side="left")
    text, word, cited = written(writer, turn(target, [classification()], intent="localize"))
    assert (word, cited) == ("no", ["E1"])
    assert text == "No: Nodule is unlikely (model probability 0.02; below its rule-out point 0.05)."


def test_a_where_question_begins_with_the_side(
    writer: DirectAnswers, composer: Composer, verifier: Verifier
) -> None:
    target = Target(kind="side", subject="Effusion", asks_side=True)  # "where is the effusion?"
    view = turn(target, [classification(), localization("Effusion", "right")], intent="localize")
    text, word, _ = written(writer, view)
    assert word is None and text.startswith("Right side: Effusion is likely")
    assert composed(composer, verifier, view).direct[0].side == "right"
    central = turn(target, [classification(), localization("Effusion", "central")],
                   intent="localize")  # fmt: skip
    text, _, _ = written(writer, central)
    assert text.startswith("Centrally: Effusion is likely")


def test_which_lung_is_whiter_names_the_side_of_the_localized_finding(
    writer: DirectAnswers,
) -> None:
    target = Target(kind="side", subject="opacity side", asks_side=True)
    text, word, _ = written(writer, turn(target, [classification(),
                                                  localization("Effusion", "left")]))  # fmt: skip
    assert word is None and text.startswith("Left side: Effusion is likely")
    text, word, cited = written(writer, turn(target, [classification()]))
    assert (text, cited) == ("Neither side stands out: no finding reaches its rule-in point on "
                             "this image.", ["E1"])  # fmt: skip


# --- normality: "are the lungs clear?" (Yes means normal), "anything abnormal?" -------------


@pytest.mark.parametrize(
    ("rows", "subject", "polarity", "expected"),
    [
        ([row("Nodule", 0.02, 0.05, 0.30)], "film", "normal",
         "Yes, within normal limits: no acute finding is above the models' operating points "
         "(every finding is below its rule-out point), within the limits of the installed "
         "models."),
        ([row("Nodule", 0.02, 0.05, 0.30)], "film", "abnormal",
         "No: no acute finding is above the models' operating points (every finding is below its "
         "rule-out point), within the limits of the installed models."),
        # the heart is not a lung finding: "are the lungs clear?" is Yes with cardiomegaly
        ([row("Cardiomegaly", 0.70, 0.08, 0.45), row("Nodule", 0.02, 0.05, 0.30)], "lungs",
         "normal", "Yes, within normal limits: no acute lung finding is above the models' "
         "operating points (every lung finding is below its rule-out point), within the limits "
         "of the installed models."),
        (ROWS, "lungs", "normal",
         "No, not within normal limits: Effusion (0.72) at or above the rule-in point (model "
         "probability)."),
        (ROWS, "film", "abnormal",
         "Yes: Effusion (0.72) at or above the rule-in point (model probability)."),
        ([row("Pneumothorax", 0.20, 0.10, 0.40), row("Nodule", 0.02, 0.05, 0.30)], "film",
         "normal", "Possibly: no finding reaches its rule-in point, but some are indeterminate "
         "(model probability): Pneumothorax (0.20)."),
    ],
)  # fmt: skip
def test_normality_is_answered_from_every_finding_in_scope(
    writer: DirectAnswers, composer: Composer, verifier: Verifier, rows: list[dict[str, Any]],
    subject: str, polarity: str, expected: str,
) -> None:  # fmt: skip
    target = Target(kind="normality", closed=True, subject=subject,
                    polarity=polarity)  # type: ignore[arg-type]  # fmt: skip
    view = turn(target, [classification(rows)], intent="detect_findings")
    assert written(writer, view)[0] == expected
    assert composed(composer, verifier, view).claims[0].text == expected


# --- what cannot be assessed, and who the patient is ------------------------------------------


@pytest.mark.parametrize("category", ["the aorta", "free air under the diaphragm",
                                      "lines, tubes and devices", "bones and fractures"])
def test_an_unsupported_target_is_i_cannot_assess_its_category(
    writer: DirectAnswers, composer: Composer, verifier: Verifier, category: str
) -> None:
    target = Target(kind="unsupported", closed=True, subject=category)
    view = turn(target, [classification()])
    assert written(writer, view) == (NOT_ASSESSED.format(category), "cannot_assess", [])
    # without a study too: nothing is read to say it
    answer = composed(composer, verifier, turn(target, [], studies=[]))
    assert answer.claims[0].text == NOT_ASSESSED.format(category)
    assert answer.direct[0].word == "cannot_assess" and answer.direct[0].subject == category


def test_identity_is_never_answered_from_the_image(
    writer: DirectAnswers, composer: Composer, verifier: Verifier
) -> None:
    target = Target(kind="identity", subject="date of birth")
    text, word, cited = written(writer, turn(target, [classification()], intent="out_of_scope"))
    assert word is None and cited == [] and text.startswith("I cannot tell who the patient is")
    answer = composed(composer, verifier, turn(target, [], intent="out_of_scope"))
    assert [c.text for c in answer.claims] == [text]


@pytest.mark.parametrize("attribute", ["sex", "age"])
def test_sex_and_age_cannot_be_assessed(writer: DirectAnswers, attribute: str) -> None:
    target = Target(kind="attribute", closed=attribute == "sex", subject=attribute)
    text, word, _ = written(writer, turn(target, [], intent="image_info"))
    assert word == "cannot_assess"
    assert text.startswith(f"I cannot assess the patient's {attribute} from this image")


@pytest.mark.parametrize(
    ("question", "recorded", "word"),
    [("is this AP?", "AP", "yes"), ("is this a PA film?", "AP", "no"),
     ("is this a PA film?", "PA", "yes"), ("AP or PA?", "AP", None),
     ("this is PA right, not AP?", "PA", "yes"), ("PA, not an AP?", "AP", "no")],
)  # fmt: skip
def test_the_projection_is_answered_from_the_header(
    writer: DirectAnswers, question: str, recorded: str, word: str | None
) -> None:
    target = Target(kind="attribute", closed=True, subject="projection")
    view = turn(target, [image_info(recorded)], intent="image_info", question=question)
    text, given, cited = written(writer, view)
    assert given == word and cited == ["E4"]
    assert f"film is {recorded}, according to its DICOM header" in text
    assert text.startswith({"yes": "Yes: ", "no": "No: ", None: "This film"}[word])


def test_without_a_recorded_projection_it_cannot_be_assessed(writer: DirectAnswers) -> None:
    target = Target(kind="attribute", closed=True, subject="projection")
    view = turn(target, [image_info("UNKNOWN")], intent="image_info", question="is this AP?")
    text, word, _ = written(writer, view)
    assert word == "cannot_assess" and text.startswith("I cannot assess the projection")


# --- several questions in one message ---------------------------------------------------------


def test_each_part_of_a_message_is_answered_first_in_order(
    composer: Composer, verifier: Verifier
) -> None:
    """ "Any effusion? Is the aorta unfolded?": one direct answer per question, in order."""
    effusion = Understanding(intent="ask_finding", confidence=1.0, method="test",
                             slots=Slots(findings=["Effusion"]), cleaned="any effusion?",
                             target=Target(kind="finding", closed=True, subject="Effusion"))
    aorta = Understanding(intent="ask_finding", confidence=1.0, method="test",
                          slots=Slots(unsupported_findings=["the aorta"]),
                          cleaned="is the aorta unfolded?",
                          target=Target(kind="unsupported", closed=True, subject="the aorta"))
    whole = effusion.model_copy(update={"parts": [effusion, aorta]})  # fmt: skip
    view = turn(effusion.target, [classification()]).model_copy(update={"understanding": whole})
    assert [p.understanding.target.subject for p in view.parts()] == ["Effusion", "the aorta"]
    answer = composed(composer, verifier, view)
    assert [(d.word, d.subject) for d in answer.direct] == [("yes", "Effusion"),
                                                            ("cannot_assess", "the aorta")]
    texts = [c.text for c in answer.claims]
    assert texts[0].startswith("Yes: Effusion is likely")
    assert texts.count(NOT_ASSESSED.format("the aorta")) == 1


def comparison(name: str, prior: float, now: float, verdict: str,
               evidence_id: str = "E5") -> Evidence:  # fmt: skip
    rows = [{"name": name, "prior_probability": prior, "probability": now, "threshold": 0.3,
             "margin": 0.1, "status": "present" if now >= 0.4 else "absent",
             "verdict": verdict}]  # fmt: skip
    return Evidence(id=evidence_id, kind="comparison", tool="compare_studies",
                    inputs={"study_id": STUDY}, values={"findings": rows})  # fmt: skip


@pytest.mark.parametrize(
    ("question", "verdict", "word"),
    [
        ("effusion still there compared with the previous?", "improved", "yes"),  # still likely
        ("is the effusion better than last time?", "improved", "yes"),
        ("is the effusion better than last time?", "unchanged", "no"),
        ("has the effusion grown since the last film?", "worsened", "yes"),
        ("has the effusion grown since the last film?", "improved", "no"),
        ("is the effusion new since the prior?", "new", "yes"),
        ("has the effusion changed since the prior?", "uncertain", "possibly"),
    ],
)  # fmt: skip
def test_a_change_question_is_answered_from_the_comparison_first(
    writer: DirectAnswers, composer: Composer, verifier: Verifier, question: str, verdict: str,
    word: str,
) -> None:  # fmt: skip
    target = Target(kind="change", closed=True, subject="Effusion")
    evidence = [classification(), comparison("Effusion", 0.9, 0.72, verdict)]
    view = turn(target, evidence, question=question, intent="compare_prior")
    text, given, cited = written(writer, view)
    assert given == word and "ompared with the prior study" in text
    assert "E5" in cited
    assert composed(composer, verifier, view).claims[0].text == text  # the verifier keeps it


def test_the_comparison_sentence_the_answer_restates_is_not_repeated(
    composer: Composer, verifier: Verifier
) -> None:
    target = Target(kind="change", closed=True, subject="Effusion")
    evidence = [classification(), comparison("Effusion", 0.9, 0.72, "uncertain")]
    studies = [StudyRef(study_id=STUDY), StudyRef(study_id="st_prior", role="prior")]
    view = turn(target, evidence, question="has the effusion changed since the prior?",
                intent="compare_prior", studies=studies)  # fmt: skip
    claims = [c.text for c in composed(composer, verifier, view).claims]
    assert claims[0].startswith("Possibly: compared with the prior study, Effusion may have")
    assert not any(c.lower() in claims[0].lower() for c in claims[1:]), claims


def test_a_change_question_without_a_prior_answers_from_the_current_study(
    writer: DirectAnswers,
) -> None:
    target = Target(kind="change", closed=True, subject="Effusion")
    view = turn(target, [classification()], question="effusion still there?",
                intent="compare_prior")  # fmt: skip
    text, word, _ = written(writer, view)
    assert word == "yes" and text.startswith("Yes: Effusion is likely")
    worse = turn(target, [classification()], question="is the effusion worse than before?",
                 intent="compare_prior")  # fmt: skip
    assert writer.write(worse, [classification()]) is None  # no change can be claimed


def test_a_projection_estimated_by_the_model_is_named_so_and_brings_the_ap_caveat(
    writer: DirectAnswers, composer: Composer, verifier: Verifier
) -> None:
    estimated = measurement(0.58, "AP")
    estimated.values["view_source"] = "model"  # the file records no projection
    target = Target(kind="heart_size", closed=True)
    view = turn(target, [classification(), estimated], question="is the heart big?")
    text, _, _ = written(writer, view)
    assert "on this AP (estimated by the projection model) film" in text
    assert "On an AP film the heart is magnified" in text
    composed(composer, verifier, view)


def test_a_step_that_failed_never_leaves_an_empty_answer(
    composer: Composer, verifier: Verifier
) -> None:
    failed = ToolFailure(tool="similar_cases", arguments={"study_id": STUDY},
                         code="cases_unavailable",
                         message="the image index is not built")  # fmt: skip
    target = Target(kind="read")
    view = turn(target, [], question="similar cases?", intent="similar_cases", failures=[failed])
    answer = composed(composer, verifier, view)
    assert [c.text for c in answer.claims] == [composer.text["step_failed"]]
    assert any("the image index is not built" in item for item in answer.limitations)


def test_an_image_unlike_the_training_data_gets_no_confident_word(
    writer: DirectAnswers, composer: Composer, verifier: Verifier
) -> None:
    # The domain-shift guard flagged the study: the classifier's bands are capped (never
    # absent, present only far beyond rule-in) and every answer says why.
    point = OperatingPoint(rule_out=0.10, rule_in=0.40)
    rows = [{**row("Effusion", p, 0.10, 0.40), "status": point.band(p, shifted=True),
             "shifted": True} for p in (0.02,)]  # fmt: skip
    flagged = classification(rows)
    flagged.values["domain"] = {
        "score": 3.1, "threshold": 1.0, "out_of_distribution": True,
        "reasons": ["the image statistics differ from the training radiographs (inverted "
                    "polarity?)"],
        "image_score": 3.1, "feature_score": 0.8, "model": {"name": "starter", "version": "1"},
    }  # fmt: skip
    view = turn(Target(kind="finding", closed=True, subject="Effusion"), [flagged],
                question="any effusion?")  # fmt: skip
    text, word, _ = written(writer, view)
    assert word == "possibly" and text.startswith("Possibly: Effusion: no call either way")
    answer = composed(composer, verifier, view)
    assert answer.limitations[0].startswith("This image differs from the images the models were "
                                            "trained on: the image statistics differ")
    assert point.band(0.69, shifted=True) == "indeterminate"
    assert point.band(0.70, shifted=True) == "present"  # far beyond rule-in: halfway to 1
