"""Which side the localization names, against the radiologists' boxes
(`radpilot models evaluate localization-side --data DIR --split val|test`).

For every NIH box that lies wholly on one side of the image's midline, the localization that
`localize_finding` would show (the box detector where it localizes the finding and finds a
box, else Grad-CAM) is asked for the boxed finding, and its strongest region's side is compared
with the box's. The answers use this figure: a finding localized to the other side than the
one asked about is "Possibly", never "No" (`radpilot/agent/direct.py`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from radpilot.core.findings import finding_from_box_label
from radpilot.data.devdata import read_nih, split_of
from radpilot.tools.imaging import read_pixels
from radpilot.tools.localize import find_regions


class SideCounts(BaseModel):
    boxes: int
    same_side: int
    central: int = Field(description="the strongest region's centre is on the midline")
    other_side: int

    @property
    def agreement(self) -> float | None:
        return round(self.same_side / self.boxes, 3) if self.boxes else None


class SideEvaluation(BaseModel):
    split: str
    overall: SideCounts
    by_finding: dict[str, SideCounts]
    agreement: float | None = Field(description="same side / one-sided boxes")


def _counts(outcomes: list[str]) -> SideCounts:
    tally = Counter(outcomes)
    return SideCounts(boxes=len(outcomes), same_side=tally["same"], central=tally["central"],
                      other_side=tally["other"])  # fmt: skip


def evaluate_side(model: Any, detector: Any, data: Path, split: str = "test",
                  limit: int | None = None,
                  progress: Callable[[str], None] | None = None) -> SideEvaluation:  # fmt: skip
    records = [r for r in read_nih(data) if r.boxes and split in ("all", split_of(r.patient_id))]
    records = records[:limit] if limit else records
    outcomes: dict[str, list[str]] = {}
    for number, record in enumerate(records, start=1):
        pixels = read_pixels(data / record.image)
        middle = pixels.shape[1] / 2
        for box in record.boxes:
            x, _, w, _ = box.xywh
            if x < middle < x + w:
                continue  # crosses the midline: no side to check
            # the image's left half is the patient's right
            truth = "right" if x + w / 2 < middle else "left"
            finding = finding_from_box_label(box.label)
            regions, _ = find_regions(model, detector, pixels, finding)
            side = regions[0].side if regions else "central"
            outcome = "same" if side == truth else "central" if side == "central" else "other"
            outcomes.setdefault(finding, []).append(outcome)
        if progress and number % 25 == 0:
            progress(f"localized {number}/{len(records)} boxed images")
    overall = _counts([o for found in outcomes.values() for o in found])
    by_finding = {finding: _counts(found) for finding, found in sorted(outcomes.items())}
    return SideEvaluation(split=split, overall=overall, agreement=overall.agreement,
                          by_finding=by_finding)  # fmt: skip
