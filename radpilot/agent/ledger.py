"""The evidence ledger: every tool result becomes an `Evidence` with a stable session id."""

from __future__ import annotations

from typing import Any

from radpilot.core.contracts import Artefact, Evidence, ModelIdentity, ToolResult


def evidence_id(number: int) -> str:
    """The session's `number`-th evidence (numbered from 1 over the whole session)."""
    return f"E{number}"


def evidence_from_result(result: ToolResult, evidence_id: str) -> Evidence:
    output: dict[str, Any] = dict(result.output or {})
    models = [ModelIdentity.model_validate(m) for m in output.pop("models", [])]
    artefacts = [Artefact.model_validate(a) for a in output.pop("artefacts", [])]
    study = result.inputs.get("study_id", "")
    return Evidence(
        id=evidence_id,
        kind=result.evidence_kind,
        tool=result.tool,
        models=models,
        inputs=result.inputs,
        values=output,
        artefacts=artefacts,
        summary=f"{result.tool} on study {study}" if study else result.tool,
    )


def find_reusable(ledger: list[Evidence], tool: str, inputs: dict[str, Any]) -> Evidence | None:
    """Evidence already produced by the same tool on the same validated inputs."""
    for evidence in reversed(ledger):
        if evidence.tool == tool and evidence.inputs == inputs:
            return evidence
    return None


def by_id(ledger: list[Evidence]) -> dict[str, Evidence]:
    return {evidence.id: evidence for evidence in ledger}
