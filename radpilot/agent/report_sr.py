"""An answer as a DICOM Comprehensive SR, for writing back to the PACS the study came from.

Why Comprehensive SR with its own content tree, not TID 1500: TID 1500 (Measurement Report)
has no place for what radpilot must carry with every statement, namely the statement itself
as text, the evidence it cites (tool, model and version) and the decision-support notice.
The tree is, under one root container:

- the decision-support notice (TEXT);
- each verified claim (TEXT), with its certainty (CODE) and each evidence it cites (TEXT)
  as properties;
- each finding the classifier scored (CODE), with its probability (NUM, no units) and status;
- the cardiothoracic ratio (NUM, ratio) where it was measured;
- each box a localization drew (SCOORD, a closed POLYLINE in the image's pixels) selected from
  the original image (IMAGE);
- the answer's limitations (TEXT).

Concepts without a standard code use the local coding scheme `99RADPILOT` (PS3.16 allows a
private scheme whose designator starts with 99); units are UCUM. Patient and study
attributes come from the original instance's header, read back from the PACS at write time.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from radpilot.agent.types import Answer
from radpilot.core.findings import NIH_FINDINGS
from radpilot.core.notice import DECISION_SUPPORT

SCHEME = "99RADPILOT"
MANUFACTURER = "radpilot"
_STATUS_MEANING = {"present": "Likely present", "indeterminate": "Indeterminate",
                   "absent": "Unlikely"}  # fmt: skip


# What the written objects take from the original header: the patient and study they belong
# to and the image they describe, nothing else (no free text, and no invalid value of the
# source, such as a two-digit age, is carried into them).
REFERENCE_KEYWORDS = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID",
    "StudyDate", "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName",
    "SeriesInstanceUID", "SOPClassUID", "SOPInstanceUID", "Modality",
)  # fmt: skip


def reference_header(source: Any) -> Any:
    """The attributes of `source` (an identified header) the SR and SC are filed under."""
    from pydicom import Dataset

    header = Dataset()
    for keyword in REFERENCE_KEYWORDS:
        if keyword in source:
            setattr(header, keyword, source.data_element(keyword).value)
    return header


def _code(value: str, meaning: str) -> Any:
    from highdicom.sr import CodedConcept

    return CodedConcept(value=value, scheme_designator=SCHEME, meaning=meaning[:64])


def _text(name: Any, value: str, relationship: str) -> Any:
    from highdicom.sr import TextContentItem

    return TextContentItem(name=name, value=value[:1024], relationship_type=relationship)


def _finding_code(name: str) -> Any:
    """A code value is at most 16 characters: the finding's place in the vocabulary."""
    index = NIH_FINDINGS.index(name) if name in NIH_FINDINGS else 99
    return _code(f"RPF{index:02d}", name.replace("_", " "))


def _with(item: Any, children: list[Any]) -> Any:
    """`item` with `children` as its content (pydicom accepts a list for a sequence)."""
    item.ContentSequence = children
    return item


def _evidence_line(evidence: Any) -> str:
    models = ", ".join(f"{m.name} {m.version}" for m in evidence.models)
    return f"{evidence.id}: {evidence.tool}" + (f" ({models})" if models else "")


def structured_report(answer: Answer, source: Any, *, series_uid: str, sop_uid: str) -> Any:
    """The SR of `answer`, about the image whose (identified) header is `source`."""
    import highdicom as hd
    from highdicom.sr import (
        CodeContentItem,
        ContainerContentItem,
        ImageContentItem,
        NumContentItem,
        ScoordContentItem,
    )

    def image() -> Any:
        return ImageContentItem(name=_code("RP100", "Source image"),
                                referenced_sop_class_uid=source.SOPClassUID,
                                referenced_sop_instance_uid=source.SOPInstanceUID,
                                relationship_type="SELECTED FROM")  # fmt: skip

    unit = hd.sr.CodedConcept("1", "UCUM", "no units")
    ratio = hd.sr.CodedConcept("{ratio}", "UCUM", "ratio")
    by_id = {e.id: e for e in answer.evidence}
    items: list[Any] = [_text(_code("RP001", "Decision-support notice"), DECISION_SUPPORT,
                              "CONTAINS")]  # fmt: skip
    for claim in answer.claims:
        items.append(_with(_text(_code("RP010", "Statement"), claim.text, "CONTAINS"), [
            CodeContentItem(name=_code("RP011", "Certainty"),
                            value=_code(f"RP-{claim.certainty}", claim.certainty),
                            relationship_type="HAS PROPERTIES"),  # fmt: skip
            *(_text(_code("RP012", "Evidence"), _evidence_line(by_id[e]), "HAS PROPERTIES")
              for e in claim.evidence if e in by_id),
        ]))  # fmt: skip
    for row in answer.findings:
        if row.probability is None:
            continue
        finding = CodeContentItem(name=_code("RP020", "Finding"),
                                  value=_finding_code(row.name),
                                  relationship_type="CONTAINS")  # fmt: skip
        items.append(_with(finding, [
            NumContentItem(name=_code("RP021", "Model probability"), value=row.probability,
                           unit=unit, relationship_type="HAS PROPERTIES"),  # fmt: skip
            CodeContentItem(name=_code("RP022", "Status"),
                            value=_code(f"RP-{row.status}",
                                        _STATUS_MEANING.get(row.status, row.status)),
                            relationship_type="HAS PROPERTIES"),  # fmt: skip
        ]))
    for evidence in answer.evidence:
        values = evidence.values
        if evidence.tool == "measure" and "cardiothoracic_ratio" in values:
            ctr = NumContentItem(name=_code("RP030", "Cardiothoracic ratio"),
                                 value=float(values["cardiothoracic_ratio"]), unit=ratio,
                                 relationship_type="CONTAINS")  # fmt: skip
            items.append(_with(ctr, [_text(_code("RP012", "Evidence"), _evidence_line(evidence),
                                           "HAS PROPERTIES")]))  # fmt: skip
        for region in values.get("regions", []) if evidence.tool == "localize_finding" else []:
            x, y, w, h = (float(v) for v in region["box"])
            corners = np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h], [x, y]])
            box = ScoordContentItem(name=_code("RP040", f"Region of {values.get('finding')}"),
                                    graphic_type="POLYLINE", graphic_data=corners,
                                    pixel_origin_interpretation="VOLUME",
                                    relationship_type="CONTAINS")  # fmt: skip
            items.append(_with(box, [image()]))
    items += [_text(_code("RP050", "Limitation"), text, "CONTAINS")
              for text in answer.limitations]  # fmt: skip
    root = _with(ContainerContentItem(name=_code("RP000", "Chest radiograph decision support")),
                 items)  # fmt: skip
    return hd.sr.ComprehensiveSR(
        evidence=[reference_header(source)], content=root, series_instance_uid=series_uid,
        series_number=9901, sop_instance_uid=sop_uid, instance_number=1, manufacturer=MANUFACTURER,
        is_complete=True, is_final=False, is_verified=False,
    )  # fmt: skip


def secondary_capture(overlay_rgb: np.ndarray, source: Any, *, series_uid: str, sop_uid: str,
                      number: int) -> Any:  # fmt: skip
    """An overlay (RGB) as a Secondary Capture in the original study."""
    import highdicom as hd

    return hd.sc.SCImage.from_ref_dataset(
        ref_dataset=reference_header(source), pixel_array=overlay_rgb.astype(np.uint8),
        photometric_interpretation="RGB", bits_allocated=8, coordinate_system="PATIENT",
        series_instance_uid=series_uid, series_number=9902, sop_instance_uid=sop_uid,
        instance_number=number, manufacturer=MANUFACTURER,
        patient_orientation=("L", "F"),
    )  # fmt: skip
