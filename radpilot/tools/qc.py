"""Quality and scope checks run on every study before any tool interprets it.

A `refuse` issue means interpreting tools must not analyse the image (blank, too small, not a
radiograph); a `warn` issue is a limitation that travels with every answer about the study.
Thresholds were checked against the 1,269 real development radiographs, none of which is
refused (tests/integration/test_real_images.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from radpilot.tools.pixels import DecodedImage

MIN_SIDE_REFUSE = 64
MIN_SIDE_WARN = 256
# Standard deviation of intensities in [0, 1]: a radiograph is far above this.
BLANK_STD = 0.01
# Mean absolute difference between colour channels (0-1): greyscale radiographs are ~0.
COLOUR_REFUSE = 0.06
# Share of the central region's pixels in its two most common of 256 grey levels: documents
# and screenshots are mostly flat background there, radiographs never are (at most 0.31 on the
# development images; black borders lie outside the central region).
FLAT_REFUSE = 0.6


class QCIssue(BaseModel):
    code: str
    severity: Literal["refuse", "warn"]
    message: str


class QCResult(BaseModel):
    issues: list[QCIssue] = Field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when interpreting tools may analyse the image."""
        return not any(issue.severity == "refuse" for issue in self.issues)

    @property
    def refusal(self) -> str:
        """Why interpreting tools refuse the image ("" when they do not)."""
        return "; ".join(i.message for i in self.issues if i.severity == "refuse")

    @property
    def limitations(self) -> list[str]:
        return [issue.message for issue in self.issues]


def check_quality(image: DecodedImage) -> QCResult:
    size_issues = _size_issues(image)
    refused_for_size = any(issue.severity == "refuse" for issue in size_issues)
    content_issues = [] if refused_for_size else _content_issues(image)
    issues = [*size_issues, *content_issues, *_header_issues(image)]
    issues.extend(QCIssue(code="decoding", severity="warn", message=n) for n in image.notes)
    return QCResult(issues=issues)


def _size_issues(image: DecodedImage) -> list[QCIssue]:
    height, width = image.pixels.shape
    side = min(height, width)
    if side < MIN_SIDE_REFUSE:
        return [
            QCIssue(
                code="too_small",
                severity="refuse",
                message=f"image is {width}x{height} px, too small to analyse "
                f"(at least {MIN_SIDE_REFUSE} px per side, {MIN_SIDE_WARN}+ recommended)",
            )
        ]
    if side < MIN_SIDE_WARN:
        return [
            QCIssue(
                code="low_resolution",
                severity="warn",
                message=f"low resolution ({width}x{height} px): small findings may be missed",
            )
        ]
    return []


def _content_issues(image: DecodedImage) -> list[QCIssue]:
    pixels = image.pixels
    if float(pixels.std()) < BLANK_STD:
        return [
            QCIssue(
                code="blank",
                severity="refuse",
                message="image is blank or nearly constant: nothing to analyse",
            )
        ]
    issues = []
    if image.colourfulness > COLOUR_REFUSE:
        issues.append(
            QCIssue(
                code="not_radiograph_colour",
                severity="refuse",
                message="colour image: radiographs are greyscale, this looks like a "
                "photograph or screenshot, not a chest X-ray",
            )
        )
    height, width = pixels.shape
    centre = pixels[height // 4 : 3 * height // 4, width // 4 : 3 * width // 4]
    histogram = np.bincount(np.clip(centre * 255, 0, 255).astype(np.uint8).ravel(), minlength=256)
    flat_share = float(np.sort(histogram)[-2:].sum() / histogram.sum())
    if flat_share > FLAT_REFUSE:
        issues.append(
            QCIssue(
                code="not_radiograph_flat",
                severity="refuse",
                message=f"{flat_share:.0%} of the image centre is two flat grey levels: this looks "
                "like a document, drawing or screenshot, not a chest X-ray",
            )
        )
    return issues


def _header_issues(image: DecodedImage) -> list[QCIssue]:
    issues = []
    if image.view == "LATERAL":
        issues.append(
            QCIssue(
                code="lateral_view",
                severity="warn",
                message="lateral view (from the DICOM header): radpilot's models were "
                "trained on frontal (PA/AP) views",
            )
        )
    elif image.view == "UNKNOWN":
        issues.append(
            QCIssue(
                code="view_unknown",
                severity="warn",
                message="projection not recorded (no DICOM view tag); assumed frontal",
            )
        )
    if image.burned_in_annotation:
        issues.append(
            QCIssue(
                code="burned_in_annotation",
                severity="warn",
                message="DICOM says the pixels carry burned-in annotation, which may include "
                "identifying text that de-identification of the header cannot remove",
            )
        )
    return issues
