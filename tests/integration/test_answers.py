"""The question-answering set in a CI-sized form: a closed question's answer begins Yes, No,
Possibly or I cannot assess; identity, off-topic and vague questions are never answered with a
read of the image; every claim stays grounded."""

from __future__ import annotations

from pathlib import Path

import pytest

from radpilot.assembly import build_agent
from radpilot.evals.runner import run_all
from radpilot.evals.scenario import load_scenarios
from radpilot.settings import Settings

pytestmark = pytest.mark.integration
QA = Path(__file__).parents[2] / "radpilot" / "evals" / "scenarios" / "qa"


def test_closed_questions_are_answered_first(data_dir: Path, tmp_path: Path) -> None:
    scenarios = load_scenarios(QA)[::6]
    summary, records = run_all(build_agent(Settings(state_dir=tmp_path, data=data_dir)),
                               scenarios, data_dir, jobs=2)  # fmt: skip
    direct = summary.direct_answers
    assert direct is not None and direct.closed >= 40
    unanswered = [(r.scenario, r.ask) for r in records
                  if r.expected_answer is not None and r.given_answer is None]  # fmt: skip
    assert direct.explicit_rate >= 0.9, unanswered  # 0.957 measured on this slice
    assert summary.grounding_rate == 1.0 and summary.hallucinated_priors == 0
    for tag in ("identity", "off_topic", "unclear"):  # refused or clarified, never read
        assert summary.pass_rate_by_tag.get(tag, 1.0) == 1.0, tag
    # Measured on this slice with the shipped models (unsupported 10/11, Yes/No right 8/12);
    # the bounds catch a regression, the full set's figures are in README.
    assert summary.pass_rate_by_tag.get("unsupported", 1.0) >= 0.8
    assert direct.yes_no_accuracy >= 0.5
