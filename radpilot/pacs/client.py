"""A PACS over DICOMweb: search studies (QIDO-RS), fetch a study's frontal radiograph
(WADO-RS), list a patient's earlier radiograph studies (priors).

What comes back from a PACS is identified data: it goes to the study store's ingest (which
de-identifies it, exactly like an upload) and is never logged. Errors name the PACS's host,
never its credentials, and say whether the PACS is down, slow, refusing us or has no
radiograph, so that an interface can answer with a clear status instead of a 500.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, field_validator, model_validator

from radpilot.core.errors import RadpilotError
from radpilot.settings import Settings

RADIOGRAPH_MODALITIES = ("CR", "DX")
# A search by dates alone (a worklist) spans at most this many days, not the whole archive.
MAX_WORKLIST_DAYS = 31
# Exact matching only: a wildcard (PS3.18 `*`, `?`) or a DICOM value separator would turn a
# search for one patient into a listing of many.
_UNSAFE = re.compile(r"[*?\\\x00-\x1f]")
_FRONTAL = ("PA", "AP")
_STUDY_FIELDS = ["ModalitiesInStudy", "StudyDescription", "NumberOfStudyRelatedInstances"]
_INSTANCE_FIELDS = ["Modality", "ViewPosition", "NumberOfFrames", "Rows", "Columns"]
T = TypeVar("T")
# dicomweb-client logs every study UID it retrieves (INFO), urllib3 every URL with its query
# (DEBUG, and in its retry warnings), `retrying` each failed attempt's error: identifiers that
# must not reach a log, at whatever level the app runs.
for _chatty in ("dicomweb_client", "urllib3.connectionpool", "retrying"):
    logging.getLogger(_chatty).setLevel(logging.ERROR)


class PacsError(RadpilotError):
    code = "pacs_error"


class PacsQuery(BaseModel):
    """A study search: a patient id or an accession number, optionally narrowed by dates."""

    patient_id: str | None = Field(default=None, min_length=1, max_length=64)
    accession_number: str | None = Field(default=None, min_length=1, max_length=16)
    date_from: date | None = Field(default=None, description="Earliest study date.")
    date_to: date | None = Field(default=None, description="Latest study date.")
    modality: Literal["CR", "DX"] | None = Field(
        default=None, description="Only studies with this modality; default CR or DX."
    )
    limit: int = Field(default=50, ge=1, le=200)

    @field_validator("patient_id", "accession_number")
    @classmethod
    def _exact(cls, value: str | None) -> str | None:
        if value is not None and (_UNSAFE.search(value) or not value.strip()):
            raise ValueError("must be an exact value: no wildcards (* ?), backslashes or "
                             "control characters")  # fmt: skip
        return value.strip() if value is not None else None

    @model_validator(mode="after")
    def _narrow(self) -> PacsQuery:
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise ValueError("date_from is after date_to")
        dated = self.date_from is not None and self.date_to is not None
        if self.patient_id is None and self.accession_number is None and not (
            dated and (self.date_to - self.date_from).days <= MAX_WORKLIST_DAYS  # type: ignore[operator]
        ):
            raise ValueError(f"give a patient_id, an accession_number, or a study date range "
                             f"(date_from and date_to) of at most {MAX_WORKLIST_DAYS} days")
        return self

    def filters(self) -> dict[str, str]:
        found: dict[str, str] = {}
        if self.patient_id:
            found["PatientID"] = self.patient_id
        if self.accession_number:
            found["AccessionNumber"] = self.accession_number
        if self.date_from or self.date_to:
            start = self.date_from.strftime("%Y%m%d") if self.date_from else ""
            end = self.date_to.strftime("%Y%m%d") if self.date_to else ""
            found["StudyDate"] = f"{start}-{end}"
        return found


class PacsStudy(BaseModel):
    """One study as the PACS lists it (identified: shown to the user who searched, never
    stored in a session)."""

    study_uid: str
    patient_id: str | None = None
    study_date: date | None = None
    accession_number: str | None = None
    modalities: list[str] = Field(default_factory=list)
    description: str | None = None
    instances: int | None = None

    @property
    def is_radiograph(self) -> bool:
        """CR or DX, or unknown (a PACS may not list modalities): checked again on pull."""
        return not self.modalities or any(m in RADIOGRAPH_MODALITIES for m in self.modalities)


class PacsInstance(BaseModel):
    study_uid: str
    series_uid: str
    sop_uid: str
    modality: str | None = None
    view: str | None = None
    frames: int = 1
    rows: int | None = None
    columns: int | None = None


class PacsClient:
    """QIDO-RS and WADO-RS against one DICOMweb root, through `dicomweb-client`."""

    def __init__(
        self,
        url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
        timeout_s: float = 20.0,
        max_pixels: int | None = None,
    ) -> None:
        import requests
        from dicomweb_client.api import DICOMwebClient

        session = requests.Session()
        if token:
            session.headers["Authorization"] = f"Bearer {token}"
        elif username:
            session.auth = (username, password or "")
        self.host = urlsplit(url).hostname or "the PACS"
        self.timeout_s = timeout_s
        self.max_pixels = max_pixels
        self._web = DICOMwebClient(url, session=session, timeout=timeout_s)
        # One attempt: its default (five, backing off 1-8 s) keeps a user waiting 15 s for a
        # PACS that is down; the error says so at once and the user (or client) can retry.
        self._web.set_http_retry_params(retry=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> PacsClient:
        if settings.dicomweb_url is None:
            raise PacsError(
                "no PACS is configured: set RADPILOT_DICOMWEB_URL to its DICOMweb root",
                code="pacs_not_configured",
            )
        secret = settings.dicomweb_password or None
        token = settings.dicomweb_token or None
        return cls(
            settings.dicomweb_url,
            username=settings.dicomweb_username,
            password=secret.get_secret_value() if secret else None,
            token=token.get_secret_value() if token else None,
            timeout_s=settings.dicomweb_timeout_s,
            max_pixels=int(settings.max_image_megapixels * 1_000_000),
        )

    # -- search ---------------------------------------------------------------------------

    def find_studies(self, query: PacsQuery) -> list[PacsStudy]:
        """Radiograph studies matching the query, newest first."""
        filters = query.filters()
        if query.modality:
            filters["ModalitiesInStudy"] = query.modality
        found = self._call("search", lambda: [_study(row) for row in self._web.search_for_studies(
            search_filters=filters, limit=query.limit, fields=_STUDY_FIELDS)])  # fmt: skip
        studies = [study for study in found if study.is_radiograph]
        return sorted(studies, key=lambda s: s.study_date or date.min, reverse=True)

    def study(self, study_uid: str) -> PacsStudy:
        _check_uid(study_uid)
        found = self._call("search", lambda: [_study(row) for row in self._web.search_for_studies(
            search_filters={"StudyInstanceUID": study_uid}, fields=_STUDY_FIELDS)])  # fmt: skip
        if not found:
            raise PacsError(f"the PACS has no study {study_uid}", code="pacs_not_found")
        return found[0]

    def priors(self, study: PacsStudy) -> list[PacsStudy]:
        """The same patient's radiograph studies before this one, newest first; none when the
        study's patient or date is unknown (a prior is never guessed)."""
        if not study.patient_id or study.study_date is None:
            return []
        day_before = study.study_date - timedelta(days=1)
        earlier = self.find_studies(PacsQuery(patient_id=study.patient_id, date_to=day_before,
                                              limit=200))  # fmt: skip
        return [s for s in earlier if s.study_uid != study.study_uid]

    # -- retrieve -------------------------------------------------------------------------

    def radiograph(self, study_uid: str) -> tuple[PacsInstance, bytes]:
        """The study's frontal CR/DX single-frame instance as DICOM bytes, in the transfer
        syntax the PACS stores (no transcoding asked for)."""
        instance = self._choose(self.instances(study_uid))
        return instance, self.retrieve(instance)

    def retrieve(self, instance: PacsInstance) -> bytes:
        """One instance as DICOM file bytes, in the syntax the PACS stores."""
        dataset = self._call("retrieve", lambda: self._web.retrieve_instance(
            instance.study_uid, instance.series_uid, instance.sop_uid,
            media_types=(("application/dicom", "*"),),
        ))  # fmt: skip
        buffer = io.BytesIO()
        try:
            dataset.save_as(buffer, enforce_file_format=True)
        except (ValueError, TypeError, AttributeError) as error:
            raise PacsError(f"the PACS sent an instance that cannot be written back as a "
                            f"DICOM file ({type(error).__name__})",
                            code="pacs_bad_instance") from None  # fmt: skip
        return buffer.getvalue()

    def header(self, instance: PacsInstance) -> Any:
        """The instance's header (WADO-RS metadata) as a pydicom Dataset, without pixels."""
        from pydicom import Dataset

        uids = (instance.study_uid, instance.series_uid, instance.sop_uid)
        return self._call("metadata", lambda: Dataset.from_json(
            self._web.retrieve_instance_metadata(*uids)))  # fmt: skip

    def store(self, datasets: list[Any], study_uid: str) -> None:
        """STOW-RS of `datasets` into `study_uid`, in one request; refused (nothing claimed as
        written) when the PACS reports any instance as failed."""
        reply = self._call("store", lambda: self._web.store_instances(
            datasets, study_instance_uid=study_uid))  # fmt: skip
        failed = len(reply.get("FailedSOPSequence", [])) if reply is not None else 0
        if failed:
            raise PacsError(f"the PACS at {self.host} refused {failed} of {len(datasets)} "
                            "objects", code="pacs_rejected")  # fmt: skip

    def instances(self, study_uid: str) -> list[PacsInstance]:
        _check_uid(study_uid)
        found = self._call("search", lambda: [
            _instance(row, study_uid) for row in self._web.search_for_instances(
                study_instance_uid=study_uid, fields=_INSTANCE_FIELDS)])  # fmt: skip
        if not found:
            raise PacsError(f"the PACS has no study {study_uid}", code="pacs_not_found")
        return found

    def _choose(self, instances: list[PacsInstance]) -> PacsInstance:
        radiographs = [i for i in instances if i.modality in RADIOGRAPH_MODALITIES]
        if not radiographs:
            found = ", ".join(sorted({i.modality or "unknown" for i in instances}))
            raise PacsError(f"the study has no CR or DX image (it holds {found}): radpilot "
                            "reads chest radiographs only", code="no_radiograph")  # fmt: skip
        single = [i for i in radiographs if i.frames <= 1]
        if not single:
            raise PacsError("the study's radiographs are multi-frame: radpilot reads one "
                            "single-frame radiograph", code="multi_frame")  # fmt: skip
        fitting = [i for i in single if self._fits(i)]
        if not fitting:
            raise PacsError(f"the study's radiographs are larger than the "
                            f"{(self.max_pixels or 0) / 1e6:g}-megapixel limit",
                            code="image_too_large")  # fmt: skip
        # A frontal view first (lateral views are not what the models read).
        return sorted(fitting, key=lambda i: i.view not in _FRONTAL)[0]

    def _fits(self, instance: PacsInstance) -> bool:
        if self.max_pixels is None or instance.rows is None or instance.columns is None:
            return True  # checked again on decoding
        return instance.rows * instance.columns <= self.max_pixels

    # -- errors ---------------------------------------------------------------------------

    def _call(self, what: str, request: Callable[[], T]) -> T:
        import requests

        try:
            return request()
        except requests.Timeout:
            raise PacsError(f"the PACS at {self.host} did not answer the {what} within "
                            f"{self.timeout_s:g} s", code="pacs_timeout") from None  # fmt: skip
        except requests.ConnectionError:
            raise PacsError(f"cannot reach the PACS at {self.host} ({what})",
                            code="pacs_unavailable") from None  # fmt: skip
        except requests.HTTPError as error:
            status = error.response.status_code if error.response is not None else 0
            if what == "store" and status in (400, 403, 409, 413, 415):
                raise PacsError(f"the PACS at {self.host} refused the objects (HTTP {status})",
                                code="pacs_rejected") from None  # fmt: skip
            if status in (401, 403):
                raise PacsError(f"the PACS at {self.host} refused radpilot's credentials "
                                f"(HTTP {status})", code="pacs_auth") from None  # fmt: skip
            if status == 404:
                raise PacsError(f"the PACS at {self.host} has no such study",
                                code="pacs_not_found") from None  # fmt: skip
            raise PacsError(f"the PACS at {self.host} answered the {what} with HTTP {status}",
                            code="pacs_error") from None  # fmt: skip
        except (ValueError, KeyError, TypeError) as error:  # a reply that is not DICOM JSON
            why = type(error).__name__
            raise PacsError(f"the PACS at {self.host} sent a reply radpilot cannot read ({why})",
                            code="pacs_bad_reply") from None  # fmt: skip


# -- DICOM JSON (PS3.18 F.2) -------------------------------------------------------------------

UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def _check_uid(uid: str) -> None:
    if not (0 < len(uid) <= 64 and UID.match(uid)):
        raise PacsError("a study UID is digits and dots, at most 64 characters",
                        code="bad_arguments")  # fmt: skip


def _values(row: dict[str, Any], tag: str) -> list[Any]:
    return list(row.get(tag, {}).get("Value", []))


def _first(row: dict[str, Any], tag: str) -> Any:
    values = _values(row, tag)
    return values[0] if values else None


def _text(row: dict[str, Any], tag: str) -> str | None:
    value = _first(row, tag)
    return str(value).strip() or None if value is not None else None


def _date(row: dict[str, Any], tag: str) -> date | None:
    value = _text(row, tag)
    try:
        return datetime.strptime(value[:8], "%Y%m%d").date() if value else None
    except ValueError:
        return None


def _int(row: dict[str, Any], tag: str) -> int | None:
    value = _first(row, tag)
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _study(row: dict[str, Any]) -> PacsStudy:
    uid = _text(row, "0020000D")
    if uid is None:
        raise KeyError("StudyInstanceUID")
    return PacsStudy(
        study_uid=uid,
        patient_id=_text(row, "00100020"),
        study_date=_date(row, "00080020"),
        accession_number=_text(row, "00080050"),
        modalities=[str(m) for m in _values(row, "00080061")],
        description=_text(row, "00081030"),
        instances=_int(row, "00201208"),
    )


def _instance(row: dict[str, Any], study_uid: str) -> PacsInstance:
    series, sop = _text(row, "0020000E"), _text(row, "00080018")
    if series is None or sop is None:
        raise KeyError("SeriesInstanceUID or SOPInstanceUID")
    return PacsInstance(
        study_uid=study_uid,
        series_uid=series,
        sop_uid=sop,
        modality=_text(row, "00080060"),
        view=(_text(row, "00185101") or "").upper() or None,
        frames=_int(row, "00280008") or 1,
        rows=_int(row, "00280010"),
        columns=_int(row, "00280011"),
    )
