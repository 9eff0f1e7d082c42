"""A report is an Answer rendered as FINDINGS / IMPRESSION / RECOMMENDATIONS / EVIDENCE, or
exported as a FHIR R4 DiagnosticReport (R4B resources, which R4 systems read) with one
Observation per assessed finding."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from radpilot.agent.ledger import by_id
from radpilot.agent.types import Answer, StudyRef
from radpilot.core.notice import DECISION_SUPPORT

LOINC_CHEST_XR = {"system": "http://loinc.org", "code": "36643-5", "display": "XR Chest 2V"}


def render_markdown(answer: Answer) -> str:
    present = [f for f in answer.findings if f.status == "present"]
    indeterminate = [f for f in answer.findings if f.status == "indeterminate"]
    lines = ["# Chest radiograph report (draft, decision support)", "", "## FINDINGS"]
    lines += [f"- {c.text} [{', '.join(c.evidence) or 'statement'}]" for c in answer.claims]
    lines += ["", "## IMPRESSION"]
    lines += [
        f"- {f.name}: likely (p={f.probability:.2f}) [{', '.join(f.evidence)}]" for f in present
    ] or ["- No finding reaches its rule-in point."]
    if indeterminate:
        items = ", ".join(f"{f.name} (p={f.probability:.2f})" for f in indeterminate)
        lines.append(f"- Indeterminate, between rule-out and rule-in: {items} "
                     f"[{indeterminate[0].evidence[0]}]")  # fmt: skip
    # What the guidelines say: the verified claims that cite guideline notes only.
    ledger = by_id(answer.evidence)
    guidance = [c for c in answer.claims
                if c.evidence and all(i in ledger and ledger[i].kind == "guideline"
                                      for i in c.evidence)]  # fmt: skip
    lines += ["", "## RECOMMENDATIONS"]
    lines += [f"- {c.text} [{', '.join(c.evidence)}]" for c in guidance] or [
        "- None: no guideline evidence was retrieved for this question."
    ]
    lines += ["", "## EVIDENCE"]
    for e in answer.evidence:
        models = ", ".join(f"{m.name} {m.version} (sha256 {(m.sha256 or '?')[:12]})"
                           for m in e.models) or "no model"  # fmt: skip
        lines.append(f"- {e.id}: {e.tool} — {models}")
    lines += ["", "## LIMITATIONS", *[f"- {item}" for item in answer.limitations], ""]
    lines.append(f"_Trace {answer.trace_id}. {DECISION_SUPPORT}_")
    return "\n".join(lines) + "\n"


def to_fhir(answer: Answer, studies: list[StudyRef]) -> dict[str, Any]:
    from fhir.resources.R4B.diagnosticreport import DiagnosticReport

    observations = []
    for index, finding in enumerate(answer.findings, start=1):
        observations.append({
            "resourceType": "Observation",
            "id": f"finding-{index}",
            "status": "preliminary",
            "code": {"text": finding.name},
            "valueQuantity": {"value": finding.probability, "unit": "probability"},
            "interpretation": [{"text": finding.status}],
            "note": [{"text": f"evidence {', '.join(finding.evidence)}; {DECISION_SUPPORT}"}],
        })  # fmt: skip
    report = DiagnosticReport.model_validate(
        {
            "resourceType": "DiagnosticReport",
            "id": re.sub(r"[^A-Za-z0-9.-]", "-", answer.trace_id) or "radpilot-report",
            "status": "preliminary",
            "code": {"coding": [LOINC_CHEST_XR]},
            "issued": datetime.now(UTC).isoformat(),
            "contained": observations,
            "result": [{"reference": f"#{o['id']}"} for o in observations],
            "imagingStudy": [{"display": f"{s.role} study {s.study_id}"} for s in studies],
            "conclusion": " ".join(c.text for c in answer.claims) + " " + DECISION_SUPPORT,
        }
    )
    data: dict[str, Any] = report.model_dump(mode="json", exclude_none=True)
    return data
