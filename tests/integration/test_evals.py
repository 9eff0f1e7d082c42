"""The scenario runner on real images: it passes what is right and fails what is wrong."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from radpilot.agent.service import Agent
from radpilot.evals.runner import run_all
from radpilot.evals.scenario import ScenarioError, load_scenario, load_scenarios
from radpilot.settings import Settings

pytestmark = pytest.mark.integration
FIXTURES = Path(__file__).parent.parent / "fixtures" / "scenarios"


def test_good_scenarios_pass_with_grounded_answers_and_no_invented_prior(
    data_dir: Path, tmp_path: Path
) -> None:
    summary, records = run_all(
        Agent(Settings(state_dir=tmp_path)), load_scenarios(FIXTURES / "good"), data_dir
    )
    failed = [(r.scenario, r.turn, r.checks, r.tools) for r in records if not r.passed]
    assert not failed
    assert summary.turns == 6 and summary.pass_rate == 1.0
    assert summary.tool_recall == 1.0 and summary.grounding_rate == 1.0
    assert summary.hallucinated_priors == 0
    assert summary.latency_ms_p95 >= summary.latency_ms_p50 > 0


def test_a_wrong_expectation_fails_and_the_cli_says_so(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "radpilot.app.cli", "eval", str(FIXTURES / "wrong"),
         "--data", str(data_dir), "--out", str(out)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 3, done.stderr
    summary = json.loads(done.stdout)
    assert summary["pass_rate"] == 0.0 and summary["check_pass_rates"] == {"tools": 0.0}
    [record] = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert record["scenario"] == "wrong-expectation" and record["passed"] is False
    assert json.loads((out / "summary.json").read_text()) == summary


def test_unknown_keys_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text("id: typo\nturns:\n  - ask: Is there an effusion?\n    expct: {tools: []}\n")
    with pytest.raises(ScenarioError, match="expct"):
        load_scenario(path)
    path.write_text("id: typo\nturns:\n  - ask: hi\n    expect: {tool: [measure]}\n")
    with pytest.raises(ScenarioError, match="tool"):
        load_scenario(path)
