"""The answer as a DICOM SR: every statement with its certainty and evidence, findings with
probabilities, the CTR with its unit, boxes as closed polylines on the source image, the
notice; filed under the source's patient and study only (no other header value carried)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from pydicom import Dataset
from pydicom.uid import generate_uid

from radpilot.agent.report_sr import structured_report
from radpilot.agent.types import Answer, Claim, FindingRow
from radpilot.core.contracts import Evidence, ModelIdentity
from radpilot.core.notice import DECISION_SUPPORT


def source() -> Dataset:
    header = Dataset()
    header.PatientName, header.PatientID, header.PatientSex = "Doe^Jane", "P-1", "F"
    header.PatientBirthDate, header.PatientAge = "19600101", "62"  # an invalid age (AS)
    header.StudyInstanceUID, header.SeriesInstanceUID = generate_uid(), generate_uid()
    header.SOPInstanceUID, header.SOPClassUID = generate_uid(), "1.2.840.10008.5.1.4.1.1.1"
    header.StudyDate, header.StudyTime, header.AccessionNumber = "20250310", "101500", "A1"
    header.StudyID, header.ReferringPhysicianName, header.Modality = "1", "", "CR"
    header.InstitutionName = "Hospital"
    return header


def answer() -> Answer:
    model = [ModelIdentity(name="starter-classifier", version="2")]
    return Answer(
        claims=[Claim(text="Effusion is likely (0.81).", evidence=["E1"], certainty="likely"),
                Claim(text="CTR 0.56.", evidence=["E2"], certainty="stated")],
        evidence=[
            Evidence(id="E1", kind="model_output", tool="localize_finding", models=model,
                     values={"finding": "Effusion",
                             "regions": [{"box": [10.0, 20.0, 30.0, 40.0]}]}),
            Evidence(id="E2", kind="measurement", tool="measure",
                     values={"cardiothoracic_ratio": 0.56}),
        ],
        findings=[FindingRow(name="Effusion", probability=0.81, status="present",
                             evidence=["E1"]),
                  FindingRow(name="Pleural_Thickening", probability=0.1, status="absent",
                             evidence=["E1"])],
        limitations=["Frontal adult radiographs only."],
    )  # fmt: skip


def meanings(report: Dataset, value_type: str) -> list[Dataset]:
    return [item for item in report.ContentSequence if item.ValueType == value_type]


def test_the_sr_carries_every_statement_with_its_evidence_and_the_notice() -> None:
    header = source()
    report = structured_report(answer(), header, series_uid=generate_uid(), sop_uid=generate_uid())
    assert (report.PatientID, report.StudyInstanceUID) == ("P-1", header.StudyInstanceUID)
    assert "InstitutionName" not in report and "PatientAge" not in report
    texts = [item.TextValue for item in meanings(report, "TEXT")]
    assert DECISION_SUPPORT in texts and "Frontal adult radiographs only." in texts
    statement = next(i for i in meanings(report, "TEXT") if i.TextValue.startswith("Effusion"))
    properties = {c.ConceptNameCodeSequence[0].CodeMeaning: c for c in statement.ContentSequence}
    assert properties["Certainty"].ConceptCodeSequence[0].CodeMeaning == "likely"
    assert properties["Evidence"].TextValue == "E1: localize_finding (starter-classifier 2)"
    ctr = next(i for i in meanings(report, "NUM")
               if i.ConceptNameCodeSequence[0].CodeMeaning == "Cardiothoracic ratio")  # fmt: skip
    value = ctr.MeasuredValueSequence[0]
    assert float(value.NumericValue) == 0.56
    assert value.MeasurementUnitsCodeSequence[0].CodeValue == "{ratio}"
    findings = [i.ConceptCodeSequence[0] for i in meanings(report, "CODE")]
    assert [f.CodeMeaning for f in findings] == ["Effusion", "Pleural Thickening"]
    assert all(len(f.CodeValue) <= 16 for f in findings)
    (box,) = meanings(report, "SCOORD")
    assert box.GraphicType == "POLYLINE" and list(box.GraphicData)[:2] == [10.0, 20.0]
    assert list(box.GraphicData)[-2:] == [10.0, 20.0], "closed"
    assert box.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID == (
        header.SOPInstanceUID
    )


def test_the_sr_passes_dciodvfy_without_errors(tmp_path: Path) -> None:
    if shutil.which("dciodvfy") is None:
        pytest.skip("Debian's dicom3tools (dciodvfy) is not installed")
    report = structured_report(answer(), source(), series_uid=generate_uid(),
                               sop_uid=generate_uid())  # fmt: skip
    report.save_as(tmp_path / "sr.dcm", enforce_file_format=True)
    checked = subprocess.run(["dciodvfy", str(tmp_path / "sr.dcm")], capture_output=True,
                             text=True, timeout=60)  # fmt: skip
    errors = [line for line in (checked.stdout + checked.stderr).splitlines()
              if line.startswith("Error")]  # fmt: skip
    assert errors == []
