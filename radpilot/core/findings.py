"""The finding vocabulary shared by classifiers, localizers and the planner."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator

# NIH ChestX-ray14 findings, in the order of the starter classifier's outputs.
NIH_FINDINGS: tuple[str, ...] = (
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Pleural_Thickening",
    "Hernia",
)

# The 8 findings that NIH radiologists drew boxes for: the detector's classes, in its order.
BOX_FINDINGS: tuple[str, ...] = NIH_FINDINGS[:8]

# The NIH box annotations spell one class differently from the image labels.
BOX_LABEL_TO_FINDING = {"Infiltrate": "Infiltration"}


def finding_from_box_label(label: str) -> str:
    return BOX_LABEL_TO_FINDING.get(label, label)


class OperatingPoint(BaseModel):
    """A finding's two decision thresholds on the calibrated probability, chosen on the
    validation patients: below `rule_out` the answer is "No / unlikely" (the highest threshold
    that keeps sensitivity >= 0.90), at or above `rule_in` it is "Yes / likely" (the lowest
    threshold with specificity >= 0.90), in between "Possibly / indeterminate". `rule_out` never
    exceeds `rule_in`; equal, the band is empty and the finding has a single cut."""

    rule_out: float = Field(ge=0.0, le=1.0)
    rule_in: float = Field(ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _ordered(self) -> OperatingPoint:
        if self.rule_out > self.rule_in:
            raise ValueError(f"rule_out ({self.rule_out}) must not exceed rule_in ({self.rule_in})")
        return self

    @property
    def far_in(self) -> float:
        """Halfway from rule-in to 1: only this far beyond rule-in does a finding count as
        present on an image unlike the training data."""
        return self.rule_in + (1.0 - self.rule_in) / 2

    def band(self, probability: float, *, shifted: bool = False
             ) -> Literal["absent", "indeterminate", "present"]:  # fmt: skip
        """Where a probability falls: "absent" below rule-out, "present" at or above rule-in,
        else "indeterminate". On an image the domain-shift guard flags (`shifted`) the model
        may be confidently wrong, so nothing is absent and only `far_in` is present."""
        if shifted:
            return "present" if probability >= self.far_in else "indeterminate"
        if probability >= self.rule_in:
            return "present"
        if probability < self.rule_out:
            return "absent"
        return "indeterminate"
