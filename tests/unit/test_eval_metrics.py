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
