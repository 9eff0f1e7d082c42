"""Shared helpers of the benchmarks: real images, percentiles, result files.

Every benchmark writes its figures as JSON (for tools and later comparison) and, beside it with
the same stem, a short Markdown table (for people: README, reviews) that states each target
and whether this run met it. Both come from the same dict in one call, so they never disagree.
"""

from __future__ import annotations

import json
import operator
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

os.environ.setdefault("HF_HUB_OFFLINE", "1")
RESULTS = Path(__file__).parent / "results"

Comparison = Literal["<", "<=", ">", ">=", "=="]
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq,
}  # fmt: skip
# A list of records is shown record by record, each under its first of these fields (else its
# position): `modes.hybrid.recall_at_5` reads better, and stays put, unlike `modes.2.…`.
_RECORD_LABELS = ("name", "mode", "id")


@dataclass(frozen=True)
class Target:
    """A bound on one figure, named by its dotted path in the results (`batched.cold_start_s`)."""

    figure: str
    op: Comparison
    bound: float
    unit: str = ""

    def met(self, value: Any) -> bool | None:
        """Whether `value` meets the bound; None when it was not measured (absent, null, text)."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        return _COMPARE[self.op](value, self.bound)

    def __str__(self) -> str:
        return f"{self.op} {self.bound:g}{f' {self.unit}' if self.unit else ''}"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def dev_images(count: int) -> list[Path] | None:
    """The first `count` development NIH images, or None when the data is absent."""
    from radpilot.settings import Settings

    data = Settings().data
    if data is None:
        print("no development data (RADPILOT_DATA): cannot benchmark on real images")
        return None
    return sorted((data / "nih" / "images").glob("*.png"))[:count]


def flatten(results: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """The scalar figures by dotted path. Lists of records are entered (see `_RECORD_LABELS`);
    other lists (RSS samples, error examples, question ids) stay in the JSON only: the table
    is the short summary."""
    flat: dict[str, Any] = {}
    for key, value in results.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{path}."))
        elif isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
            for index, record in enumerate(value):
                field = next((f for f in _RECORD_LABELS if f in record), None)
                label = str(index) if field is None else str(record[field])
                rest = {k: v for k, v in record.items() if k != field}
                flat.update(flatten(rest, f"{path}.{label}."))
        elif value is None or isinstance(value, str | int | float):
            flat[path] = value
    return flat


def markdown_table(title: str, results: Mapping[str, Any], targets: Sequence[Target] = ()) -> str:
    """Every figure of `results` as one Markdown table, with its target and whether it was met
    where the benchmark states one. A target whose figure is missing is listed as not
    measured rather than dropped, so a broken run cannot look like a passing one."""
    figures = flatten(results)
    by_figure = {target.figure: target for target in targets}
    rows = ["| figure | value | target | met |", "|---|---|---|---|"]
    verdicts: list[bool | None] = []
    for figure in [*figures, *(t.figure for t in targets if t.figure not in figures)]:
        value = figures.get(figure)
        target = by_figure.get(figure)
        met = ""
        if target is not None:
            verdict = target.met(value)
            verdicts.append(verdict)
            met = {True: "met", False: "**not met**", None: "not measured"}[verdict]
        rows.append(f"| {figure} | {_cell(value)} | {target or ''} | {met} |")
    summary = (
        f"Targets met: {sum(v is True for v in verdicts)} of {len(verdicts)}."
        if verdicts
        else "This benchmark states no targets: figures only."
    )
    return f"# {title}\n\n{summary}\n\n" + "\n".join(rows) + "\n"


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    return str(value).replace("|", "\\|").replace("\n", " ")


def write_report(
    path: Path, results: Mapping[str, Any], targets: Sequence[Target] = (), title: str = ""
) -> None:
    """`results` as JSON at `path` and as a Markdown table beside it (same stem, `.md`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    title = title or f"{path.stem} benchmark"
    path.with_suffix(".md").write_text(markdown_table(title, results, targets))


def write_results(name: str, results: Mapping[str, Any], targets: Sequence[Target] = ()) -> None:
    write_report(RESULTS / f"{name}.json", results, targets)
