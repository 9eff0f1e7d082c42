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
