"""The finding vocabulary shared by classifiers, localizers and the planner."""

from __future__ import annotations

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
