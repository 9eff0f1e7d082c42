"""The development data set (`../shared/data/cxr` layout) and its patient-level split."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

from pydantic import BaseModel, Field

from radpilot.core.errors import RadpilotError

Split = Literal["train", "val", "test"]
# Percent of patients in each split, by a hash of the patient id: stable across machines and
# runs, and no patient is ever in two splits.
TRAIN_PERCENT, VAL_PERCENT = 60, 15


class Box(BaseModel):
    label: str
    xywh: tuple[float, float, float, float]


class NihRecord(BaseModel):
    image: str
    patient_id: str
    view: str | None = None
    labels: list[str] = Field(default_factory=list)
    boxes: list[Box] = Field(default_factory=list)
    reference_scores_chexnet: dict[str, float] | None = None
    license: str = ""


def split_of(patient_id: str) -> Split:
    bucket = int(hashlib.sha256(patient_id.encode()).hexdigest(), 16) % 100
    if bucket < TRAIN_PERCENT:
        return "train"
    if bucket < TRAIN_PERCENT + VAL_PERCENT:
        return "val"
    return "test"


def read_rows(path: Path, layout: str) -> list[dict[str, Any]]:
    """The records of a labels.jsonl, or a clear error naming the layout `--data` needs."""
    if not path.exists():
        raise RadpilotError(
            f"no labels at {path}: --data must point at a folder laid out like "
            f"../shared/data/cxr ({layout})"
        )
    with path.open() as handle:
        return [json.loads(line) for line in handle if line.strip()]


def read_nih(data_dir: Path) -> list[NihRecord]:
    rows = read_rows(data_dir / "nih" / "labels.jsonl", "nih/labels.jsonl and nih/images/")
    return [NihRecord.model_validate(row) for row in rows]


class _OfPatient(Protocol):
    @property
    def patient_id(self) -> str: ...


Record = TypeVar("Record", bound=_OfPatient)


def records_in(records: list[Record], split: Split) -> list[Record]:
    return [record for record in records if split_of(record.patient_id) == split]


class LungMaskRecord(BaseModel):
    """A COVID-collection image with a binary lung mask (255 = lung, both lungs in one mask,
    the image's size)."""

    image: str
    patient_id: str
    lung_mask: str
    view: str | None = None
    license: str = ""


def read_lung_masks(data_dir: Path) -> list[LungMaskRecord]:
    """The COVID records that have a lung mask; they share NIH's patient split rule
    (`split_of`), so `records_in` applies to them too."""
    rows = read_rows(
        data_dir / "covid" / "labels.jsonl",
        "covid/labels.jsonl, covid/images/ and covid/lung_masks/",
    )
    return [LungMaskRecord.model_validate(row) for row in rows if row.get("lung_mask")]


class CardiacRecord(BaseModel):
    """A `cardiac/` image (JSRT with SCR masks, or Wingspan) with heart, right-lung and
    left-lung masks (the patient's sides) and, for Wingspan, the reference CTR."""

    image: str
    patient_id: str
    dataset: str
    heart_mask: str
    right_lung_mask: str
    left_lung_mask: str
    view: str | None = None
    ctr_reference: float | None = None
    license: str = ""


def read_cardiac(data_dir: Path) -> list[CardiacRecord]:
    """The `cardiac/` records; one image per patient, split by the same rule as NIH."""
    rows = read_rows(
        data_dir / "cardiac" / "labels.jsonl",
        "cardiac/labels.jsonl, cardiac/images/ and cardiac/masks/",
    )
    return [CardiacRecord.model_validate(row) for row in rows]
