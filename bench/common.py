"""Shared helpers of the benchmarks: real images, percentiles, result files."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
RESULTS = Path(__file__).parent / "results"


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


def write_results(name: str, results: dict[str, Any]) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
