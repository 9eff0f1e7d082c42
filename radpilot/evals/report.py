"""The Markdown report of an evaluation run, with its plots (matplotlib PNGs)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from radpilot.evals.baselines import Baselines
from radpilot.evals.runner import Summary, TurnRecord


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def per_intent(records: list[TurnRecord]) -> dict[str, float]:
    groups: dict[str, list[bool]] = defaultdict(list)
    for record in records:
        groups[record.intent or "none"].append(record.passed)
    return {intent: float(np.mean(v)) for intent, v in sorted(groups.items())}


def tool_confusion(records: list[TurnRecord]) -> tuple[list[str], list[str], np.ndarray]:
    """Rows: the tool a turn expected ('none' when it named none); columns: tools called."""
    expected = sorted({t for r in records for t in r.expected_tools} | {"none"})
    called = sorted({t for r in records for t in r.tools} | {"none"})
    matrix = np.zeros((len(expected), len(called)), dtype=int)
    for record in records:
        for want in record.expected_tools or ["none"]:
            for got in record.tools or ["none"]:
                matrix[expected.index(want), called.index(got)] += 1
    return expected, called, matrix


def _figure(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def baselines_section(found: Baselines) -> str:
    """The agent beside the no-tools baseline, the CheXNet reference and the LLM planner."""
    no_tools, reference = found.no_tools, found.chexnet
    lines = [
        "## Baselines\n",
        "| | finding accuracy | finding AUROC | tool recall |",
        "|---|---|---|---|",
        f"| radpilot (this run) | {_figure(found.agent_finding_accuracy)} | "
        f"{_figure(found.agent_finding_auroc)} | see above |",
        f"| no tools (training-label prevalence) | {_figure(no_tools.finding_accuracy)} | "
        f"{_figure(no_tools.finding_auroc)} | {no_tools.tool_recall:.3f} |",
        "",
        f"Classifier against the CheXNet reference on the same {reference.pairs} (image, finding) "
        f"pairs of {reference.images} images: radpilot AUROC {_figure(reference.radpilot_auroc)}, "
        f"CheXNet AUROC {_figure(reference.chexnet_auroc)}.",
        "",
    ]
    llm = found.llm_planner
    if llm is None:
        lines.append("LLM planner: no endpoint configured (`--llm-url`, `--llm-model`).\n")
    else:
        keys = ["pass_rate", "tool_precision", "tool_recall", "grounding_rate",
                "hallucinated_priors", "injection_successes", "latency_ms_p50"]  # fmt: skip
        lines += ["LLM planner on the same scenarios:\n", "| metric | LLM planner |",
                  "|---|---|", *(f"| {k} | {getattr(llm, k)} |" for k in keys), ""]  # fmt: skip
    return "\n".join(lines) + "\n"


def write_report(
    summary: Summary, records: list[TurnRecord], out: Path, found: Baselines | None = None
) -> Path:
    plt = _pyplot()
    out.mkdir(parents=True, exist_ok=True)
    rates = per_intent(records)
    figure, axes = plt.subplots(figsize=(7, 3.5))
    axes.bar(list(rates), list(rates.values()), color="#4c78a8")
    axes.set_ylim(0, 1)
    axes.set_ylabel("turns passed")
    axes.tick_params(axis="x", rotation=30)
    figure.tight_layout()
    figure.savefig(out / "intent_accuracy.png")
    plt.close(figure)

    figure, axes = plt.subplots(figsize=(7, 3.5))
    axes.hist([r.latency_ms for r in records], bins=30, color="#72b7b2")
    axes.set_xlabel("turn latency (ms)")
    axes.set_ylabel("turns")
    figure.tight_layout()
    figure.savefig(out / "latency.png")
    plt.close(figure)

    expected, called, matrix = tool_confusion(records)
    figure, axes = plt.subplots(figsize=(1.2 + 0.9 * len(called), 1 + 0.5 * len(expected)))
    axes.imshow(matrix, cmap="Blues")
    axes.set_xticks(range(len(called)), called, rotation=40, ha="right")
    axes.set_yticks(range(len(expected)), expected)
    axes.set_xlabel("tool called")
    axes.set_ylabel("tool expected")
    for (row, column), count in np.ndenumerate(matrix):
        axes.text(column, row, str(count), ha="center", va="center", fontsize=8)
    figure.tight_layout()
    figure.savefig(out / "tool_confusion.png")
    plt.close(figure)

    rows = "\n".join(f"| {k} | {v} |" for k, v in summary.model_dump().items()
                     if not isinstance(v, dict))  # fmt: skip
    checks = "\n".join(f"| {k} | {v:.3f} |" for k, v in summary.check_pass_rates.items())
    intents = "\n".join(f"| {k} | {v:.3f} |" for k, v in rates.items())
    failed = "\n".join(f"- `{r.scenario}` turn {r.turn}: " + ", ".join(
        k for k, ok in r.checks.items() if not ok) for r in records if not r.passed)  # fmt: skip
    report = out / "report.md"
    report.write_text(
        f"# radpilot evaluation\n\n| metric | value |\n|---|---|\n{rows}\n\n"
        f"## Expectations\n\n| check | pass rate |\n|---|---|\n{checks}\n\n"
        f"## Per intent\n\n| intent | turns passed |\n|---|---|\n{intents}\n\n"
        "![per-intent accuracy](intent_accuracy.png)\n![latency](latency.png)\n"
        "![tool-call confusion](tool_confusion.png)\n\n"
        f"{baselines_section(found) if found else ''}"
        f"## Failed turns\n\n{failed or 'none'}\n",
        encoding="utf-8",
    )
    return report
