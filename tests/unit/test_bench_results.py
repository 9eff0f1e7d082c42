"""bench/common.py's result files: the JSON and, beside it, a Markdown table with each target
and whether it was met (no data, no models: the helper alone)."""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def common() -> Iterator[ModuleType]:
    """bench/common.py as the benchmarks import it (a sibling module, not a package)."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        yield importlib.import_module("common")
    finally:
        sys.path.remove(str(ROOT / "bench"))


RESULTS = {
    "model": "starter-classifier",
    "batched": {"cold_start_s": 12.5, "concurrent": {"errors": 0, "p50_ms": 9325.5}},
    "modes": [{"mode": "dense", "recall_at_5": 0.9}, {"mode": "hybrid", "recall_at_5": 0.97}],
    "samples": [[0.0, 944.7, 0], [2.0, 950.1, 1]],  # long series stay in the JSON
    "overhead_ratio": None,
}


def rows(markdown: str) -> dict[str, list[str]]:
    """The table's rows by figure: [value, target, met]."""
    cells = [line.strip("|").split(" | ") for line in markdown.splitlines() if line[:2] == "| "]
    return {row[0].strip(): [c.strip() for c in row[1:]] for row in cells[1:]}


def test_every_figure_has_a_row_and_targets_say_met_or_not(common: ModuleType) -> None:
    Target = common.Target
    table = rows(common.markdown_table("server", RESULTS, [
        Target("batched.cold_start_s", "<", 20, "s"),
        Target("batched.concurrent.p50_ms", "<=", 1500, "ms"),
        Target("modes.hybrid.recall_at_5", ">=", 0.95),
        Target("overhead_ratio", "<=", 1.1),
    ]))  # fmt: skip
    assert table["model"] == ["starter-classifier", "", ""]
    assert table["batched.cold_start_s"] == ["12.5", "< 20 s", "met"]
    assert table["batched.concurrent.p50_ms"] == ["9325.5", "<= 1500 ms", "**not met**"]
    assert table["modes.hybrid.recall_at_5"] == ["0.97", ">= 0.95", "met"]
    assert table["modes.dense.recall_at_5"] == ["0.9", "", ""]
    assert table["overhead_ratio"] == ["—", "<= 1.1", "not measured"]
    assert table["batched.concurrent.errors"] == ["0", "", ""]
    assert not any(figure.startswith("samples") for figure in table)


def test_a_target_without_its_figure_is_listed_as_not_measured(common: ModuleType) -> None:
    markdown = common.markdown_table("x", {"a": 1}, [common.Target("gone", "==", 0)])
    assert rows(markdown)["gone"] == ["—", "== 0", "not measured"]
    assert "Targets met: 0 of 1." in markdown
    assert "no targets" in common.markdown_table("gpu", {"cpu": {"lungs": 0.4}})


def test_the_report_is_json_with_a_markdown_table_beside_it(
    common: ModuleType, tmp_path: Path
) -> None:
    path = tmp_path / "results" / "classifier.json"
    common.write_report(path, RESULTS, [common.Target("batched.cold_start_s", "<", 20)])
    assert json.loads(path.read_text()) == RESULTS
    markdown = (tmp_path / "results" / "classifier.md").read_text()
    assert markdown.startswith("# classifier benchmark\n")
    assert "Targets met: 1 of 1." in markdown
