"""The Markdown report: its RECOMMENDATIONS are the verified claims that cite guideline notes,
and it says so when there are none."""

from radpilot.agent.report import render_markdown
from radpilot.agent.types import Answer, Claim, FindingRow
from radpilot.core.contracts import Evidence

FINDINGS = Evidence(id="E1", kind="model_output", tool="classify_findings")
GUIDELINE = Evidence(id="E2", kind="guideline", tool="search_guidelines")
ADVICE = "BTS guidance: a unilateral effusion warrants diagnostic aspiration."
READ = "Effusion is likely (model probability 0.73)."


def section(report: str, name: str) -> list[str]:
    lines = report.split(f"## {name}\n", 1)[1].split("\n## ", 1)[0]
    return [line for line in lines.splitlines() if line.strip()]


def test_recommendations_are_the_claims_that_cite_guidelines() -> None:
    answer = Answer(
        claims=[Claim(text=READ, evidence=["E1"], certainty="likely"),
                Claim(text=ADVICE, evidence=["E2"], certainty="stated")],
        evidence=[FINDINGS, GUIDELINE],
        findings=[FindingRow(name="Effusion", probability=0.73, status="present",
                             evidence=["E1"])],
    )  # fmt: skip
    report = render_markdown(answer)
    assert section(report, "RECOMMENDATIONS") == [f"- {ADVICE} [E2]"]
    assert f"- {READ} [E1]" in section(report, "FINDINGS")
    assert "Decision support, not a diagnosis" in report


def test_without_guideline_evidence_the_report_says_there_is_none() -> None:
    answer = Answer(claims=[Claim(text=READ, evidence=["E1"], certainty="likely")],
                    evidence=[FINDINGS])  # fmt: skip
    assert section(render_markdown(answer), "RECOMMENDATIONS") == [
        "- None: no guideline evidence was retrieved for this question."
    ]


def test_the_impression_lists_indeterminate_findings_apart_from_likely_ones() -> None:
    """Statuses are present / indeterminate / absent (two operating points): an indeterminate
    finding is named in the IMPRESSION, neither as likely nor dropped."""
    answer = Answer(
        claims=[Claim(text=READ, evidence=["E1"], certainty="likely")], evidence=[FINDINGS],
        findings=[FindingRow(name="Effusion", probability=0.73, status="present", evidence=["E1"]),
                  FindingRow(name="Mass", probability=0.35, status="indeterminate",
                             evidence=["E1"]),
                  FindingRow(name="Nodule", probability=0.02, status="absent", evidence=["E1"])],
    )  # fmt: skip
    impression = section(render_markdown(answer), "IMPRESSION")
    assert impression[0] == "- Effusion: likely (p=0.73) [E1]"
    assert len(impression) == 2 and "Mass (p=0.35)" in impression[1]
    assert "ndeterminate" in impression[1] and "[E1]" in impression[1]
    assert not any("Nodule" in line for line in impression)
    nothing = Answer(findings=[FindingRow(name="Nodule", probability=0.02, status="absent",
                                          evidence=["E1"])])  # fmt: skip
    assert section(render_markdown(nothing), "IMPRESSION") == [
        "- No finding reaches its rule-in point."]  # fmt: skip
