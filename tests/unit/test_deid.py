"""De-identification: no identifying string survives, dates and keys stay consistent."""

import io
from datetime import date
from pathlib import Path

import pydicom
import pytest

from radpilot.app.cli import main
from radpilot.tools.dicom import Deidentifier
from radpilot.tools.imaging import decode_image
from tests.factories import (
    BIRTH_DATE,
    INSTITUTION,
    PATIENT_ID,
    PATIENT_NAME,
    PRIVATE_TEXT,
    REFERRING,
    make_dicom,
    write,
)

IDENTIFYING = [
    PATIENT_NAME,
    "Johanna",
    PATIENT_ID,
    BIRTH_DATE,
    INSTITUTION,
    PRIVATE_TEXT,
    "Gregory",
    REFERRING,
    "ACME Imaging",
]


def run_deid(source: Path, output: Path) -> pydicom.Dataset:
    assert main(["deid", str(source), str(output)]) == 0
    return pydicom.dcmread(output)


def test_no_identifying_string_remains_in_the_output_bytes(tmp_path: Path) -> None:
    original = write(tmp_path / "in.dcm", make_dicom(study_date="20240115"))
    raw = original.read_bytes()
    assert all(text.encode() in raw for text in IDENTIFYING)  # the test file really has them
    run_deid(original, tmp_path / "out.dcm")
    cleaned = (tmp_path / "out.dcm").read_bytes()
    for text in IDENTIFYING + ["20240115"]:
        assert text.encode() not in cleaned, f"{text!r} survived de-identification"


def test_profile_markers_and_pseudonyms(tmp_path: Path) -> None:
    original = write(tmp_path / "in.dcm", make_dicom())
    before = pydicom.dcmread(original)
    ds = run_deid(original, tmp_path / "out.dcm")
    assert ds.PatientIdentityRemoved == "YES"
    assert "PS3.15" in ds.DeidentificationMethod
    assert [c.CodeValue for c in ds.DeidentificationMethodCodeSequence] == ["113100", "113107"]
    assert str(ds.PatientID).startswith("pk_") and str(ds.PatientName) == str(ds.PatientID)
    assert ds.PatientBirthDate == ""
    assert "InstitutionName" not in ds
    assert not any(element.tag.is_private for element in ds.iterall())
    assert ds.SOPInstanceUID != before.SOPInstanceUID
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.SOPClassUID == before.SOPClassUID  # standard UIDs are not instance data
    assert (ds.pixel_array == before.pixel_array).all()


def test_one_patient_keeps_one_key_dates_shift_consistently(tmp_path: Path) -> None:
    study_uid = pydicom.uid.generate_uid()
    prior = write(tmp_path / "prior.dcm", make_dicom(study_date="20240101", study_uid=study_uid))
    current = write(
        tmp_path / "current.dcm", make_dicom(study_date="20240131", study_uid=study_uid)
    )
    other = write(tmp_path / "other.dcm", make_dicom(patient_id="OTHER-1", study_date="20240101"))
    a = run_deid(prior, tmp_path / "a.dcm")
    b = run_deid(current, tmp_path / "b.dcm")
    c = run_deid(other, tmp_path / "c.dcm")
    assert a.PatientID == b.PatientID != c.PatientID
    day = lambda ds: date(int(ds.StudyDate[:4]), int(ds.StudyDate[4:6]), int(ds.StudyDate[6:]))  # noqa: E731
    assert (day(b) - day(a)).days == 30  # the interval survives
    assert day(a) != date(2024, 1, 1)  # the dates themselves do not
    assert a.StudyInstanceUID == b.StudyInstanceUID != study_uid  # remapped consistently


def test_keys_are_stable_across_runs_on_one_site(tmp_path: Path) -> None:
    source = write(tmp_path / "in.dcm", make_dicom())
    first = run_deid(source, tmp_path / "one.dcm")
    second = run_deid(source, tmp_path / "two.dcm")
    assert first.PatientID == second.PatientID
    assert first.StudyDate == second.StudyDate


def test_ingest_de_identifies_before_anything_is_kept() -> None:
    image = decode_image(
        make_dicom(study_date="20240115"),
        filename="x.dcm",
        max_megapixels=50,
        deidentifier=Deidentifier(b"k" * 32),
    )
    assert image.patient_key is not None and PATIENT_ID not in image.patient_key
    assert image.acquired is not None and image.acquired < date(2024, 1, 15)


def test_png_metadata_is_stripped(tmp_path: Path) -> None:
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", PATIENT_NAME)
    buffer = io.BytesIO()
    Image.new("L", (300, 300), 128).save(buffer, format="PNG", pnginfo=info)
    source = write(tmp_path / "photo.png", buffer.getvalue())
    assert main(["deid", str(source), str(tmp_path / "clean.png")]) == 0
    assert PATIENT_NAME.encode() not in (tmp_path / "clean.png").read_bytes()


def test_a_folder_is_mirrored_and_bad_files_are_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "in"
    (source / "sub").mkdir(parents=True)
    write(source / "sub" / "a.dcm", make_dicom())
    write(source / "notes.png", b"not an image at all")
    assert main(["deid", str(source), str(tmp_path / "out")]) == 2
    assert (tmp_path / "out" / "sub" / "a.dcm").exists()
    printed = capsys.readouterr().out
    assert "FAILED" in printed and "1 of 2 files de-identified" in printed
    assert PATIENT_NAME not in printed and PATIENT_ID not in printed


def test_output_may_not_overwrite_the_input(tmp_path: Path) -> None:
    source = write(tmp_path / "in.dcm", make_dicom())
    assert main(["deid", str(source), str(source)]) == 2


def test_order_numbers_and_comments_outside_the_profile_table_are_removed(tmp_path: Path) -> None:
    ds = pydicom.dcmread(io.BytesIO(make_dicom()))
    ds.RequestedProcedureID = "RP-55501"
    ds.FillerOrderNumberImagingServiceRequest = "FO-55502"
    ds.StudyComments = "Call Dr Jensen on 555-0199"
    ds.add_new((0x0040, 0x0009), "SH", "SPS-55503")  # ScheduledProcedureStepID
    ds.add_new((0x0038, 0x0010), "LO", "AD-55504")  # AdmissionID
    ds.Manufacturer = "Acme Radiography"  # not identifying: kept
    ds.save_as(tmp_path / "in.dcm")
    cleaned_ds = run_deid(tmp_path / "in.dcm", tmp_path / "out.dcm")
    cleaned = (tmp_path / "out.dcm").read_bytes()
    for text in ("RP-55501", "FO-55502", "Jensen", "SPS-55503", "AD-55504"):
        assert text.encode() not in cleaned, f"{text!r} survived de-identification"
    assert cleaned_ds.Manufacturer == "Acme Radiography"
