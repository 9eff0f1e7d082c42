"""DICOM ingest: de-identification (PS3.15 Basic Application Level Confidentiality Profile)
and decoding of pixel data into radpilot's greyscale convention.

De-identification happens before anything about a DICOM file is stored or logged. Identity
is replaced by a pseudonymous patient key (a keyed hash of the patient ID) so that a patient's
studies can still be compared over time; dates are shifted by a per-patient number of days so
intervals between studies survive (the profile's "Retain Longitudinal Temporal Information
with Modified Dates" option); UIDs are remapped consistently.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import math
import os
import secrets
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from radpilot.core.errors import IngestError
from radpilot.tools.pixels import (
    DecodedImage,
    View,
    check_pixel_count,
    grey_from_rgb,
    rescale_to_unit,
)

RADIOGRAPH_MODALITIES = {"CR", "DX"}
MAX_SHIFT = timedelta(days=3650)  # dates move 30 to 3,650 days back, fixed per patient
EARLIEST_SHIFTED = date.min + MAX_SHIFT
_LATERAL_VIEWS = {"LL", "RL", "LATERAL", "LAT", "LLD", "RLD"}

# PS3.15 Table E.1-1, Basic Profile actions for the attributes a chest radiograph carries.
# X = remove, Z = replace with an empty value. PatientName/PatientID (D: the pseudonym at the
# top level, emptied in sequence items), dates (shifted), UIDs (U), every person name, private
# tags, overlays and curves are handled by rule below.
_REMOVE = (
    "PatientID:Z AccessionNumber:Z StudyID:Z ReferringPhysicianName:Z PatientBirthDate:Z "
    "PatientSex:Z ContentCreatorName:Z "
    "InstitutionName:X InstitutionAddress:X InstitutionalDepartmentName:X "
    "InstitutionCodeSequence:X ReferringPhysicianAddress:X "
    "ReferringPhysicianTelephoneNumbers:X ReferringPhysicianIdentificationSequence:X "
    "StationName:X PhysiciansOfRecord:X PhysiciansOfRecordIdentificationSequence:X "
    "PerformingPhysicianName:X PerformingPhysicianIdentificationSequence:X "
    "NameOfPhysiciansReadingStudy:X PhysiciansReadingStudyIdentificationSequence:X "
    "OperatorsName:X OperatorIdentificationSequence:X RequestingPhysician:X "
    "ScheduledPerformingPhysicianName:X AdmittingDiagnosesDescription:X "
    "AdmittingDiagnosesCodeSequence:X DerivationDescription:X IssuerOfPatientID:X "
    "OtherPatientIDs:X OtherPatientIDsSequence:X OtherPatientNames:X PatientBirthName:X "
    "PatientBirthTime:X PatientAge:X PatientSize:X PatientWeight:X PatientAddress:X "
    "PatientMotherBirthName:X MilitaryRank:X BranchOfService:X MedicalRecordLocator:X "
    "MedicalAlerts:X Allergies:X CountryOfResidence:X RegionOfResidence:X "
    "PatientTelephoneNumbers:X EthnicGroup:X Occupation:X AdditionalPatientHistory:X "
    "PatientComments:X PatientReligiousPreference:X SmokingStatus:X PregnancyStatus:X "
    "LastMenstrualDate:X PatientState:X ResponsiblePerson:X ResponsibleOrganization:X "
    "CurrentPatientLocation:X PatientInstitutionResidence:X VisitComments:X "
    "ReasonForStudy:X RequestedProcedureDescription:X RequestAttributesSequence:X "
    "ReferencedPatientSequence:X ReferencedStudySequence:X "
    "ReferencedPerformedProcedureStepSequence:X "
    "PerformedProcedureStepID:X PerformedProcedureStepDescription:X "
    "PerformedLocation:X PerformedStationName:X ScheduledProcedureStepLocation:X "
    "DeviceSerialNumber:X ProtocolName:X StudyDescription:X SeriesDescription:X "
    "ImageComments:X AcquisitionComments:X TextComments:X InterpretationText:X "
    "RequestingService:X DetectorID:X PlateID:X CassetteID:X GantryID:X "
    "ServiceEpisodeID:X ServiceEpisodeDescription:X AdmissionID:X "
    "IssuerOfAdmissionIDSequence:X PatientInsurancePlanCodeSequence:X "
    "ModifiedAttributesSequence:X OriginalAttributesSequence:X "
    "DigitalSignaturesSequence:X RequestedProcedureID:X StudyComments:X "
    "PlacerOrderNumberImagingServiceRequest:X FillerOrderNumberImagingServiceRequest:X "
    "ScheduledProcedureStepID:X ScheduledStationName:X ScheduledStationAETitle:X "
    "PerformedStationAETitle:X OrderEnteredBy:X OrderEntererLocation:X "
    "OrderCallbackPhoneNumber:X ReasonForTheRequestedProcedure:X"
)
# Beyond the table: free-text and identifier elements (text VRs whose keyword ends in ID or
# Comments, e.g. a site's own order or episode numbers) are removed, as the profile's "other
# identifying attributes" rule asks; a radiograph needs none of them to be read.
_FREE_TEXT_VRS = {"LO", "SH", "LT", "ST", "UT"}
_FREE_TEXT_SUFFIXES = ("ID", "Comments")
PROFILE_ACTIONS: dict[str, str] = dict(item.split(":") for item in _REMOVE.split())

# UIDs that name a standard (SOP class, transfer syntax), not an instance: never remapped.
_STANDARD_UID_KEYWORDS = {"TransferSyntaxUID", "ImplementationClassUID", "CodingSchemeUID"}

# LO allows 64 characters; the code sequence below names the profile and option in full.
DEIDENTIFICATION_METHOD = "radpilot: PS3.15 Basic Profile, Retain Modified Dates"
_METHOD_CODES = (
    ("113100", "Basic Application Confidentiality Profile"),
    ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
)


def load_or_create_secret(state_dir: Path) -> bytes:
    """The site's de-identification key (created once, readable by the owner only).

    Keeping it stable is what makes patient keys, date shifts and UIDs consistent across
    uploads; losing it only breaks linking of old and new studies, never de-identification.
    """
    path = state_dir / "keys" / "deid.key"
    if path.exists():
        return bytes.fromhex(path.read_text().strip())
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_bytes(32)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(secret.hex())
    return secret


class Deidentifier:
    """Applies the confidentiality profile with keyed, consistent replacements."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _digest(self, purpose: str, value: str) -> bytes:
        return hmac.new(self._secret, f"{purpose}\x00{value}".encode(), hashlib.sha256).digest()

    def patient_key(self, ds: Any) -> str | None:
        """Pseudonymous key of the patient; None when the file names no patient at all."""
        identity = "|".join(
            str(ds.get(keyword, "") or "")
            for keyword in ("PatientID", "IssuerOfPatientID", "PatientName", "PatientBirthDate")
        )
        if not identity.strip("|"):
            return None
        return "pk_" + self._digest("patient", identity).hex()[:20]

    def date_shift(self, patient_key: str | None) -> timedelta:
        """Between 30 and 3,650 days back, fixed per patient so intervals are preserved."""
        seed = patient_key or secrets.token_hex(8)
        days = int.from_bytes(self._digest("shift", seed)[:4]) % (MAX_SHIFT.days - 29)
        return timedelta(days=30 + days)

    def remap_uid(self, uid: str) -> str:
        return "2.25." + str(int.from_bytes(self._digest("uid", uid)[:16]))

    def deidentify(self, ds: Any) -> str | None:
        """De-identify `ds` in place; returns the pseudonymous patient key."""
        from pydicom.dataset import Dataset
        from pydicom.sequence import Sequence

        key = self.patient_key(ds)
        shift = self.date_shift(key)
        ds.remove_private_tags()
        ds.walk(lambda dataset, element: self._clean_element(dataset, element, shift))
        ds.PatientName = key or "ANONYMOUS"
        ds.PatientID = key or ""
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = DEIDENTIFICATION_METHOD
        ds.LongitudinalTemporalInformationModified = "MODIFIED"
        codes = []
        for value, meaning in _METHOD_CODES:
            code = Dataset()
            code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = value, "DCM", meaning
            codes.append(code)
        ds.DeidentificationMethodCodeSequence = Sequence(codes)
        if hasattr(ds, "file_meta") and "SOPInstanceUID" in ds:
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.preamble = b"\x00" * 128
        return key

    def _clean_element(self, dataset: Any, element: Any, shift: timedelta) -> None:
        keyword = element.keyword
        group = element.tag.group
        if 0x5000 <= group <= 0x50FF or 0x6000 <= group <= 0x60FF:
            del dataset[element.tag]  # curves and overlays may carry burned-in text
            return
        action = PROFILE_ACTIONS.get(keyword)
        if (
            action is None
            and element.VR in _FREE_TEXT_VRS
            and keyword.endswith(_FREE_TEXT_SUFFIXES)
        ):
            action = "X"
        if action == "X":
            del dataset[element.tag]
        elif action == "Z" or element.VR == "PN":
            element.value = ""
        elif element.VR == "UI" and element.value and _is_instance_uid(keyword):
            element.value = _map_values(element.value, self.remap_uid)
        elif element.VR in ("DA", "DT") and element.value:
            element.value = _map_values(element.value, lambda value: _shift(value, shift))


def _is_instance_uid(keyword: str) -> bool:
    return not keyword.endswith("ClassUID") and keyword not in _STANDARD_UID_KEYWORDS


def _map_values(value: Any, mapper: Any) -> Any:
    from pydicom.multival import MultiValue

    if isinstance(value, MultiValue | list):
        return [mapper(str(item)) for item in value]
    return mapper(str(value))


def _shift(value: str, shift: timedelta) -> str:
    """Shift a DA (YYYYMMDD) or the date part of a DT; unparseable values are removed, and so
    are placeholder dates that land in the first years of the calendar (00110101 and the
    like): a shifted date is kept only if a second de-identification could shift it again, so
    that de-identifying twice removes nothing more than once."""
    digits = value.strip()
    try:
        day = datetime.strptime(digits[:8], "%Y%m%d").date()
        shifted = day - shift
    except (ValueError, OverflowError):  # OverflowError: shifted to before the year 1
        return ""
    if shifted < EARLIEST_SHIFTED:
        return ""
    return shifted.isoformat().replace("-", "") + digits[8:]  # strftime drops a year's zeros


def read_dataset(data: bytes) -> Any:
    import pydicom

    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=data[128:132] != b"DICM")
        meta = getattr(ds, "file_meta", None)
        for element in (*(meta.iterall() if meta else ()), *ds.iterall()):
            _ = element.value  # parse every element now, not lazily later
    except Exception as error:  # pydicom raises many types for malformed input
        raise IngestError(
            "malformed DICOM: the header cannot be parsed", code="malformed_dicom"
        ) from error
    if len(ds) == 0:
        raise IngestError("malformed DICOM: no data elements", code="malformed_dicom")
    return ds


def check_radiograph(ds: Any) -> None:
    modality = str(ds.get("Modality", "") or "").upper()
    if modality and modality not in RADIOGRAPH_MODALITIES:
        raise IngestError(
            f"modality {modality} is not a radiograph: radpilot analyses chest X-rays "
            "(CR or DX) only",
            code="wrong_modality",
        )
    if "PixelData" not in ds:
        raise IngestError(
            "this DICOM has no pixel data (a report, presentation state or header-only file?)",
            code="no_pixel_data",
        )
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise IngestError(
            f"multi-frame DICOM ({frames} frames): upload a single radiograph",
            code="multi_frame",
        )


def decode_dicom(data: bytes, *, max_pixels: int, deidentifier: Deidentifier) -> DecodedImage:
    ds = read_dataset(data)
    try:
        return _decode_dataset(ds, max_pixels, deidentifier)
    except (ValueError, TypeError, AttributeError, OverflowError) as error:
        # Text where a number belongs, two values where one does, an empty value pydicom
        # needs: the error's text may quote header values, so it is not repeated.
        raise IngestError(
            "malformed DICOM: an attribute holds a value of the wrong type or size",
            code="malformed_dicom",
        ) from error


def _decode_dataset(ds: Any, max_pixels: int, deidentifier: Deidentifier) -> DecodedImage:
    check_radiograph(ds)
    patient_key = deidentifier.deidentify(ds)
    check_pixel_count(int(ds.get("Columns", 0) or 0), int(ds.get("Rows", 0) or 0), max_pixels)
    pixels, colourfulness = _decode_pixels(ds)
    return DecodedImage(
        pixels=pixels,
        source_format="dicom",
        modality=str(ds.get("Modality", "") or "unknown"),
        view=_view(ds),
        bits_stored=int(ds.get("BitsStored", 8) or 8),
        spacing_mm=_spacing(ds),
        acquired=_acquired(ds),
        patient_key=patient_key,
        burned_in_annotation=str(ds.get("BurnedInAnnotation", "")).upper() == "YES",
        colourfulness=colourfulness,
        notes=[] if ds.get("Modality") else ["DICOM does not state its modality"],
    )


def _decode_pixels(ds: Any) -> tuple[np.ndarray, float]:
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    try:
        raw = ds.pixel_array
    except Exception as error:  # the pixel backends raise many types
        name = getattr(syntax, "name", str(syntax or "unknown"))
        # The decoder hint helps only where a decoder is what is missing.
        hint = (". Compressed syntaxes need a decoder such as pylibjpeg (pip install pylibjpeg "
                "pylibjpeg-libjpeg pylibjpeg-openjpeg) or GDCM"
                if getattr(syntax, "is_compressed", False) else "")  # fmt: skip
        raise IngestError(
            f"cannot decode the pixel data (transfer syntax {name} {syntax or ''}): "
            f"{_first_line(error)}{hint}",
            code="undecodable_pixels",
        ) from error
    if raw.ndim == 3:  # colour (RGB after pydicom's YBR conversion)
        grey, colourfulness = grey_from_rgb(raw.astype(np.float32) / max(float(raw.max()), 1.0))
        return rescale_to_unit(grey), colourfulness
    unit = rescale_to_unit(apply_voi_lut(apply_modality_lut(raw, ds), ds).astype(np.float32))
    if str(ds.get("PhotometricInterpretation", "")) == "MONOCHROME1":
        unit = 1.0 - unit  # MONOCHROME1: low values are white
    return unit.astype(np.float32), 0.0


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def _view(ds: Any) -> View:
    position = str(ds.get("ViewPosition", "") or "").upper()
    if position in ("PA", "AP"):
        return position  # type: ignore[return-value]
    if position in _LATERAL_VIEWS:
        return "LATERAL"
    return "UNKNOWN"


def _spacing(ds: Any) -> tuple[float, float] | None:
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        try:
            row, column = (float(item) for item in ds.get(keyword))
        except (TypeError, ValueError):  # absent, or not two numbers
            continue
        if 0 < row < math.inf and 0 < column < math.inf:
            return row, column
    return None


def _acquired(ds: Any) -> date | None:
    for keyword in ("AcquisitionDate", "ContentDate", "SeriesDate", "StudyDate"):
        value = str(ds.get(keyword, "") or "")
        try:
            return datetime.strptime(value[:8], "%Y%m%d").date()
        except ValueError:
            continue
    return None


def deidentify_dicom_bytes(data: bytes, deidentifier: Deidentifier) -> tuple[bytes, str | None]:
    """A de-identified copy of a DICOM file (any modality) and its pseudonymous patient key."""
    ds = read_dataset(data)
    key = deidentifier.deidentify(ds)
    buffer = io.BytesIO()
    try:
        ds.save_as(buffer)
    except (ValueError, TypeError, AttributeError) as error:
        raise IngestError(
            f"cannot write the de-identified DICOM: {_first_line(error)}", code="malformed_dicom"
        ) from error
    return buffer.getvalue(), key
