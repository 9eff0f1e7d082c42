"""Change verdicts and their scoring (no models, no data)."""

import pytest

from radpilot.tools.compare import verdict_of
from radpilot.training.evaluate_temporal import scores


@pytest.mark.parametrize(
    ("prior", "current", "verdict"),
    [
        (0.10, 0.70, "new"),
        (0.70, 0.10, "resolved"),
        (0.45, 0.52, "uncertain"),  # crosses the threshold within the margin
        (0.60, 0.90, "worsened"),
        (0.90, 0.60, "improved"),
        (0.80, 0.84, "unchanged"),  # present on both, within the margin
        (0.05, 0.30, "unchanged"),  # absent on both
        (0.40, 0.62, "uncertain"),  # beyond the margin, but the log-odds move by 0.9 only
    ],
)
def test_verdicts_need_a_change_beyond_the_margin(
    prior: float, current: float, verdict: str
) -> None:
    assert verdict_of(prior, current, threshold=0.5, margin=0.1) == verdict


def test_macro_f1_averages_the_three_changes() -> None:
    result = scores(["new", "resolved", "unchanged", "unchanged"],
                    ["new", "unchanged", "unchanged", "unchanged"])  # fmt: skip
    assert result.f1 == {"new": 1.0, "resolved": 0.0, "unchanged": 0.8}
    assert result.macro_f1 == pytest.approx(0.6) and result.accuracy == 0.75
