"""`bench/soak.py` in a bounded run (~30 s of load), and its verdict on made-up figures.

The real soak runs for minutes (`python bench/soak.py --minutes 10`); 30 s is all warm-up
(models loading, per-study caches filling), so the smoke run loosens the memory bound and
checks that the loop, the RSS sampling and the report work and that no request failed.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def soak() -> Iterator[ModuleType]:
    """bench/soak.py as a module (it imports its sibling `common` as a script would)."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        yield importlib.import_module("soak")
    finally:
        sys.path.remove(str(ROOT / "bench"))


def test_a_short_soak_has_no_errors_and_reports_every_figure(
    data_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "soak.json"
    command = [
        sys.executable, "bench/soak.py", "--minutes", "0.5", "--clients", "2",
        "--warmup-sessions", "2", "--warmup-fraction", "0.3", "--rss-window-s", "6",
        "--max-growth-mb", "3000", "--out", str(out),
    ]  # fmt: skip
    env = {**os.environ, "RADPILOT_DATA": str(data_dir)}
    run = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["errors"] == 0 and report["ok"]
    assert report["sessions"] >= 2 and report["requests"] >= 5 * report["sessions"]
    assert set(report["latency"]) == {"all", "create", "upload", "ask", "delete"}
    assert 0 < report["latency"]["all"]["p50_ms"] <= report["latency"]["all"]["p95_ms"]
    rss = report["rss_mb"]
    assert 0 < rss["start"] <= rss["max"] and rss["after_warmup"] and rss["end"]
    assert report["growth_after_warmup_mb"] is not None
    assert len(report["samples"]) >= 10  # one every 2 s
    assert "soak OK" in run.stdout


def figures(soak: ModuleType, rss: list[float], errors: list[str]) -> dict[str, object]:
    """The soak's verdict on a made-up run: one session and one RSS sample per second."""
    args = argparse.Namespace(minutes=1.0, warmup_fraction=0.0, warmup_sessions=10,
                              rss_window_s=5.0, max_growth_mb=150.0, clients=1,
                              sample_s=1.0)  # fmt: skip
    record = soak.Record()
    record.latencies["ask"] = [0.1, 0.2, 0.3]
    record.errors = errors
    record.session_times = [float(t) for t in range(1, len(rss))]
    samples = [(float(t), value, t) for t, value in enumerate(rss)]
    summary: dict[str, object] = soak.summarise(args, record, samples, 0.0, 0.0, len(rss) - 1.0)
    return summary


def test_the_verdict_ignores_warm_up_and_fails_on_growth_or_errors(soak: ModuleType) -> None:
    warm_then_flat = [1000.0 + 100 * min(t, 10) for t in range(60)]  # +1 GB in warm-up only
    flat = figures(soak, warm_then_flat, [])
    assert flat["ok"] and flat["growth_after_warmup_mb"] == 0
    leaking = [2000.0 + 5 * t for t in range(60)]  # +5 MB per session
    leak = figures(soak, leaking, [])
    assert not leak["ok"] and leak["growth_after_warmup_mb"] > 150  # type: ignore[operator]
    assert 400 < leak["trend_per_100_sessions_mb"] < 600  # type: ignore[operator]
    assert not figures(soak, warm_then_flat, ["HTTPStatusError: 500"])["ok"]
