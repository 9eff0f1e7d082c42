"""A bounded atheris run of the study loader's fuzz target (tests/fuzz/fuzz_ingest.py): no
input may raise anything but a `RadpilotError`, hang, or yield pixels outside [0, 1]."""

from __future__ import annotations

import importlib.util
import re
import resource
import subprocess
import sys
from pathlib import Path

import pytest

TARGET = Path(__file__).resolve().parents[1] / "fuzz" / "fuzz_ingest.py"
SECONDS = 20


@pytest.mark.skipif(
    importlib.util.find_spec("atheris") is None,
    reason="atheris is not installed (pip install -e '.[dev]'; it needs a wheel for this "
    "platform and Python)",
)
def test_the_ingest_fuzzer_finds_no_crash(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    # libFuzzer's RSS limit reads the process's peak RSS, which Linux carries over from the
    # parent through fork and exec: a pytest process that has loaded models would trip it
    # before the first input. So the limit is 2 GB above this process's own peak.
    inherited_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    result = subprocess.run(
        [sys.executable, str(TARGET), str(corpus), f"-max_total_time={SECONDS}", "-seed=1",
         "-timeout=10", "-print_final_stats=1", f"-artifact_prefix={tmp_path}/",
         f"-rss_limit_mb={inherited_mb + 2048}"],
        capture_output=True, text=True, timeout=SECONDS + 120,
    )  # fmt: skip
    log = result.stdout + result.stderr
    crashes = sorted(
        p.name for kind in ("crash", "timeout", "oom") for p in tmp_path.glob(f"{kind}-*")
    )
    assert result.returncode == 0 and not crashes, f"{crashes}\n{log[-4000:]}"
    executed = re.search(r"stat::number_of_executed_units: (\d+)", log)
    assert executed is not None and int(executed.group(1)) > 100, log[-2000:]
