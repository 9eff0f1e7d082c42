"""The study store: ingest (decode, de-identify, QC) and atomic storage of studies.

Only de-identified data is written: the pixels (as a NumPy array) and the `Study` record.
Study ids are random and unguessable.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import secrets
import shutil
import tempfile
from pathlib import Path

import numpy as np

from radpilot.core.errors import IngestError, StudyNotFoundError
from radpilot.tools.dicom import Deidentifier, load_or_create_secret
from radpilot.tools.imaging import Study, decode_image
from radpilot.tools.pixels import DecodedImage
from radpilot.tools.qc import check_quality

_ID_PATTERN_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


def is_store_id(text: str) -> bool:
    """Whether `text` can be a store id (a study's or an artefact's): ids become file names,
    so only these characters can never climb out of the store (no `/`, no `..`)."""
    return bool(text) and set(text) <= _ID_PATTERN_CHARS


def write_atomically(path: Path, data: bytes) -> None:
    """Write to a temporary file and rename: readers see the old file or the new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


class StudyStore:
    def __init__(self, root: Path, *, secret: bytes, max_megapixels: float = 50.0) -> None:
        self.root = root
        self._deidentifier = Deidentifier(secret)
        self._max_megapixels = max_megapixels

    @classmethod
    def in_state_dir(cls, state_dir: Path, *, max_megapixels: float = 50.0) -> StudyStore:
        return cls(
            state_dir / "studies",
            secret=load_or_create_secret(state_dir),
            max_megapixels=max_megapixels,
        )

    def decode(self, data: bytes, filename: str = "") -> DecodedImage:
        """Decode and de-identify a file in memory (nothing stored); raises `IngestError`."""
        return decode_image(data, filename=filename, max_megapixels=self._max_megapixels,
                            deidentifier=self._deidentifier)  # fmt: skip

    def ingest(self, data: bytes, filename: str = "") -> Study:
        """Decode, de-identify and check a file, then store it; raises `IngestError`."""
        image = self.decode(data, filename)
        study_id = "st_" + secrets.token_urlsafe(16)
        height, width = image.pixels.shape
        study = Study(
            id=study_id,
            pixel_ref=f"{study_id}/pixels.npy",
            source_format=image.source_format,
            modality=image.modality,
            view=image.view,
            width=width,
            height=height,
            bits_stored=image.bits_stored,
            spacing_mm=image.spacing_mm,
            acquired=image.acquired,
            patient_key=image.patient_key,
            qc=check_quality(image),
        )
        buffer = _npy_bytes(image.pixels)
        write_atomically(self.root / study.pixel_ref, buffer)
        # The record is written last: a study exists only once its pixels are complete.
        write_atomically(self.root / study_id / "study.json", study.model_dump_json().encode())
        return study

    def ingest_file(self, path: Path) -> Study:
        try:
            data = path.read_bytes()
        except OSError as error:
            raise IngestError(
                f"cannot read {path.name}: {error.strerror}", code="unreadable"
            ) from None
        return self.ingest(data, filename=path.name)

    def _folder(self, study_id: str) -> Path:
        if not is_store_id(study_id):
            raise StudyNotFoundError(f"unknown study {study_id!r}")
        return self.root / study_id

    def get(self, study_id: str) -> Study:
        record = self._folder(study_id) / "study.json"
        if not record.exists():
            raise StudyNotFoundError(f"unknown study {study_id!r}")
        return Study.model_validate(json.loads(record.read_text()))

    def pixels(self, study_id: str) -> np.ndarray:
        study = self.get(study_id)
        return np.load(self.root / study.pixel_ref, allow_pickle=False)

    def delete(self, study_id: str) -> None:
        """Remove a study's folder (pixels and record). A study already gone is fine, so that
        a retried deletion finishes; a malformed id is refused like any other lookup."""
        folder = self._folder(study_id)
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(folder)


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array.astype(np.float32), allow_pickle=False)
    return buffer.getvalue()
