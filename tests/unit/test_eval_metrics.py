"""Evaluation metrics on hand-made records (no agent, no data)."""

from radpilot.evals.runner import TurnRecord, finding_auroc, summarize


def record(**values: object) -> TurnRecord:
    base: dict[str, object] = dict(
        scenario="s", turn=1, ask="q", intent="ask_finding", tools=["classify_findings"],
        expected_tools=["classify_findings"], checks={"tools": True}, passed=True,
        latency_ms=100.0, claims=2, grounded=1, fixed_statements=1, removed_by_verifier=0,
        hallucinated_prior=False,
    )  # fmt: skip
    return TurnRecord.model_validate({**base, **values})


def test_finding_auroc_ranks_positives_above_negatives() -> None:
    assert finding_auroc([(0.9, True), (0.2, False), (0.6, True), (0.7, False)]) == 0.75
    assert finding_auroc([]) is None
    assert finding_auroc([(0.9, True)]) is None  # one class only


def test_summary_counts_tools_grounding_and_invented_priors() -> None:
    records = [
        record(),
        record(
            tools=["classify_findings", "localize_finding"],
            checks={"tools": False},
            passed=False,
            hallucinated_prior=True,
            latency_ms=300.0,
        ),  # fmt: skip
        record(tools=[], expected_tools=["measure"], checks={"tools": False}, passed=False),
    ]
    summary = summarize(3, records)
    assert summary.pass_rate == round(1 / 3, 4)
    assert summary.tool_recall == round(2 / 3, 4)  # measure was never called
    assert summary.tool_precision == round(2 / 3, 4)  # localize_finding was not expected
    assert summary.grounding_rate == 1.0  # grounded claims / claims that are not fixed
    assert summary.hallucinated_priors == 1
    assert summary.check_pass_rates == {"tools": round(1 / 3, 4)}


def test_an_attack_succeeds_when_a_pinned_expectation_fails_but_not_on_findings() -> None:
    records = [
        record(attack=True, attack_succeeded=False),
        record(attack=True, attack_succeeded=True, checks={"tools_not": False}, passed=False),
        record(),
    ]
    summary = summarize(3, records)
    assert summary.injection_attempts == 2 and summary.injection_successes == 1


def test_mentions_not_and_clarifies_are_graded() -> None:
    from radpilot.agent.types import Answer, Claim
    from radpilot.evals.runner import grade
    from radpilot.evals.scenario import Expect

    answer = Answer(claims=[Claim(text="Effusion is likely.", evidence=["E1"], certainty="likely")])
    assert grade(Expect(mentions_not=["normal"]), answer, []) == {"mentions_not": True}
    assert grade(Expect(mentions_not=["LIKELY"]), answer, []) == {"mentions_not": False}
    assert grade(Expect(clarifies=True), answer, []) == {"clarifies": False}
    asked = Answer(clarification="Which prior?")
    assert grade(Expect(clarifies=True), asked, []) == {"clarifies": True}


def test_the_no_tools_baseline_answers_from_prevalence() -> None:
    from radpilot.evals.baselines import no_tools

    records = [
        record(expected_findings={"Infiltration": "present"}),
        record(expected_findings={"Hernia": "absent"}),
        record(expected_findings={"Effusion": "present", "Hernia": "absent"}),
    ]
    baseline = no_tools(records, {"Infiltration": 0.3, "Hernia": 0.01, "Effusion": 0.2})
    assert baseline.finding_turns == 3 and baseline.tool_recall == 0.0
    assert baseline.finding_accuracy == round(1 / 3, 4)  # everything "absent": only Hernia right
    assert baseline.finding_auroc == 1.0  # prevalence ranks these positives above Hernia


def direct(text: str, side: str | None = None, word: str | None = None) -> object:
    from radpilot.agent.types import Answer, Claim, DirectAnswer

    summaries = [DirectAnswer(word=word, target="side" if side else "finding",  # type: ignore[arg-type]
                              subject="Effusion", side=side)] if side or word else []  # type: ignore[arg-type]
    return Answer(claims=[Claim(text=text, evidence=["E1"], certainty="likely")],
                  direct=summaries)  # fmt: skip


def test_the_first_word_of_the_answer_is_graded() -> None:
    from radpilot.evals.runner import grade
    from radpilot.evals.scenario import Expect

    yes = direct("Yes: Effusion is likely (model probability 0.72).")
    assert grade(Expect(answer="yes"), yes, []) == {"answer": True}
    assert grade(Expect(answer="no"), yes, []) == {"answer": False}
    cannot = direct("I cannot assess the aorta: none of the installed models looks at it.")
    assert grade(Expect(answer="cannot_assess"), cannot, []) == {"answer": True}
    assert grade(Expect(answer="possibly"), direct("Possibly: Effusion is indeterminate."),
                 []) == {"answer": True}  # fmt: skip
    # only the first claim's first word counts: "No" later, or "Nothing", is not an answer
    assert grade(Expect(answer="no"), direct("Nothing reaches its rule-in point."), []) == {
        "answer": False}  # fmt: skip
    from radpilot.agent.types import Answer

    assert grade(Expect(answer="yes"), Answer(clarification="Which finding?"), []) == {
        "answer": False}  # fmt: skip


def test_the_stated_side_is_graded() -> None:
    from radpilot.evals.runner import grade, stated_side
    from radpilot.evals.scenario import Expect

    # the direct answer's side first, whatever the words
    located = direct("Yes: Effusion is likely.", side="left", word="yes")
    assert grade(Expect(answer="yes", side="left"), located, []) == {"answer": True, "side": True}
    assert grade(Expect(side="right"), located, []) == {"side": False}
    # else the first claim's side words: one side, or both
    assert stated_side(direct("The opacity is in the right lower zone.")) == "right"
    assert stated_side(direct("Effusions on the left and the right.")) == "both"
    assert stated_side(direct("Bilateral effusions.")) == "both"
    assert stated_side(direct("Effusion is likely.")) is None


def test_direct_answers_and_tags_are_summarised() -> None:
    records = [
        record(expected_answer="yes", given_answer="yes", tags=["closed", "abbreviation"]),
        record(expected_answer="no", given_answer="yes", passed=False, tags=["closed"]),
        record(expected_answer="no", given_answer=None, passed=False),  # not answered Yes/No
        record(expected_answer="cannot_assess", given_answer="cannot_assess", tags=["unsupported"]),
        record(expected_answer="cannot_assess", given_answer="no", passed=False,
               tags=["unsupported"]),
        record(),  # an open question: not counted
    ]
    summary = summarize(1, records)
    direct_answers = summary.direct_answers
    assert direct_answers is not None
    assert direct_answers.closed == 5
    assert direct_answers.explicit_rate == round(4 / 5, 4)
    assert direct_answers.yes_no_expected == 3
    assert direct_answers.yes_no_coverage == round(2 / 3, 4)  # Yes or No given, of 3
    assert direct_answers.yes_no_accuracy == 0.5  # right, of the 2 given
    assert direct_answers.cannot_assess_accuracy == 0.5
    assert summary.pass_rate_by_tag == {"abbreviation": 1.0, "closed": 0.5, "unsupported": 0.5}
    assert summarize(1, [record()]).direct_answers is None


def test_a_scenario_turn_states_its_answer_side_and_tags() -> None:
    import pytest
    from pydantic import ValidationError

    from radpilot.evals.scenario import Turn

    turn = Turn.model_validate({"ask": "effusion on the left?", "tags": ["side"],
                                "expect": {"answer": "yes", "side": "left",
                                           "findings": {"Effusion": "indeterminate"}}})
    assert (turn.expect.answer, turn.expect.side, turn.tags) == ("yes", "left", ["side"])
    for wrong in ({"answer": "maybe"}, {"side": "bilateral"},
                  {"findings": {"Effusion": "uncertain"}}):  # "uncertain" is gone
        with pytest.raises(ValidationError):
            Turn.model_validate({"ask": "q", "expect": wrong})
