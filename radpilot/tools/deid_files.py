"""De-identification of files and folders on disk (`radpilot deid IN OUT`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from radpilot.core.errors import IngestError, RadpilotError
from radpilot.tools.dicom import Deidentifier, deidentify_dicom_bytes
from radpilot.tools.imaging import sniff_format, strip_raster_metadata
from radpilot.tools.studies import write_atomically


class FileOutcome(BaseModel):
    source: str
    output: str | None = None
    patient_key: str | None = None
    error: str | None = None


class DeidReport(BaseModel):
    files: list[FileOutcome]

    @property
    def failed(self) -> list[FileOutcome]:
        return [outcome for outcome in self.files if outcome.error is not None]

    def lines(self) -> list[str]:
        lines = []
        for outcome in self.files:
            if outcome.error:
                lines.append(f"FAILED {outcome.source}: {outcome.error}")
            else:
                key = f" (patient key {outcome.patient_key})" if outcome.patient_key else ""
                lines.append(f"de-identified {outcome.source} -> {outcome.output}{key}")
        done = len(self.files) - len(self.failed)
        lines.append(f"{done} of {len(self.files)} files de-identified")
        return lines


def deidentify_path(
    source: Path, destination: Path, *, secret: bytes, max_megapixels: float
) -> DeidReport:
    """De-identify one file, or every file under a folder into a mirrored folder."""
    if source.resolve() == destination.resolve():
        raise RadpilotError("OUT must differ from IN: originals are never overwritten")
    deidentifier = Deidentifier(secret)
    if source.is_dir():
        pairs = [
            (path, destination / path.relative_to(source))
            for path in sorted(source.rglob("*"))
            if path.is_file()
        ]
    else:
        pairs = [(source, destination)]
    outcomes = [_deidentify_file(src, dst, deidentifier, max_megapixels) for src, dst in pairs]
    if len(outcomes) == 1 and outcomes[0].error is not None and not source.is_dir():
        raise IngestError(f"{source.name}: {outcomes[0].error}")
    return DeidReport(files=outcomes)


def _deidentify_file(
    source: Path, destination: Path, deidentifier: Deidentifier, max_megapixels: float
) -> FileOutcome:
    try:
        data = source.read_bytes()
        if sniff_format(data, source.name) == "dicom":
            clean, key = deidentify_dicom_bytes(data, deidentifier)
        else:
            clean, key = strip_raster_metadata(data, max_megapixels=max_megapixels), None
            destination = destination.with_suffix(".png")
        write_atomically(destination, clean)
    except RadpilotError as error:
        return FileOutcome(source=str(source), error=error.message)
    except OSError as error:
        return FileOutcome(source=str(source), error=f"cannot read or write: {error.strerror}")
    return FileOutcome(source=str(source), output=str(destination), patient_key=key)
