"""Similar reference cases: public radiology reports by text, development images by image.

These are *reference cases*, never evidence about the patient in front of the user: they show
what similar reports said or what labels similar-looking images carried.

- Reports: the 3,955 OpenI / Indiana University chest X-ray reports shipped inside the
  torchxrayvision wheel (`NLMCXR_reports.tgz`, CC BY-NC-ND 4.0), cited by report id, indexed by
  their findings and impression text with MiniLM in Chroma.
- Images: the NIH ChestX-ray14 development images, indexed by the findings classifier's
  penultimate features (global average pooled, unit length), returning their NIH labels.
"""

from __future__ import annotations

import logging
import tarfile
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
from pydantic import BaseModel, Field

from radpilot.core.errors import RadpilotError
from radpilot.knowledge.embedding import MiniLMEmbeddingFunction
from radpilot.knowledge.store import chroma_client
from radpilot.shared import process_wide

log = logging.getLogger(__name__)

REPORTS_COLLECTION = "openi_reports"
REPORTS_LICENCE = "CC BY-NC-ND 4.0 (Indiana University / OpenI chest X-ray collection)"
NIH_LICENCE = "NIH Clinical Center, unrestricted use (Wang et al., ChestX-ray8, CVPR 2017)"
# Hits this close to the query image are the query image itself (or an exact copy of it).
SAME_IMAGE_SIMILARITY = 0.9999
Progress = Callable[[str], None]
T = TypeVar("T")


class CasesUnavailableError(RadpilotError):
    code = "cases_unavailable"


class ReportCase(BaseModel):
    report_id: str
    findings: str
    impression: str
    labels: list[str] = Field(description="the report's MeSH major terms")

    @property
    def text(self) -> str:
        return f"Findings: {self.findings} Impression: {self.impression}".strip()


class ReferenceCase(BaseModel):
    source: Literal["openi_report", "nih_image"]
    case_id: str
    similarity: float
    labels: list[str]
    text: str | None = Field(default=None, description="report findings and impression")
    licence: str


def in_batches(
    items: list[T], size: int, what: str, progress: Progress | None
) -> Iterator[list[T]]:
    """Consecutive batches, reporting progress after each one is processed."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
        if progress:
            progress(f"embedded {min(start + size, len(items))}/{len(items)} {what}")


def reports_archive() -> Path:
    return Path(str(resources.files("torchxrayvision").joinpath("data/NLMCXR_reports.tgz")))


def _section(root: ET.Element, label: str) -> str:
    for node in root.iter("AbstractText"):
        if node.get("Label") == label:
            return " ".join((node.text or "").split())
    return ""


def read_reports(archive: Path) -> Iterator[ReportCase]:
    """Reports with a findings or impression section, in archive order."""
    with tarfile.open(archive) as tar:
        for member in tar:
            if not member.name.endswith(".xml"):
                continue
            handle = tar.extractfile(member)
            if handle is None:
                continue
            root = ET.fromstring(handle.read())
            uid = root.find("uId")
            findings, impression = _section(root, "FINDINGS"), _section(root, "IMPRESSION")
            if uid is None or not (findings or impression):
                continue
            labels = sorted({" ".join((m.text or "").split()) for m in root.iter("major")} - {""})
            yield ReportCase(
                report_id=uid.get("id", ""), findings=findings, impression=impression,
                labels=labels,
            )  # fmt: skip


class ReportCases:
    """Text similarity over the OpenI reports; the collection is built on first use."""

    def __init__(
        self,
        state_dir: Path,
        weights_dir: Path,
        archive: Path | None = None,
        *,
        chroma_url: str | None = None,
    ) -> None:
        self.archive = archive or reports_archive()
        self._collection = chroma_client(state_dir, chroma_url).get_or_create_collection(
            REPORTS_COLLECTION,
            embedding_function=MiniLMEmbeddingFunction(str(weights_dir)),
            configuration={"hnsw": {"space": "cosine"}},
        )
        self._lock = threading.Lock()

    def build(self, progress: Progress | None = None) -> int:
        """Embed the reports not yet in the collection; returns how many were added."""
        with self._lock:
            # Reading the archive takes seconds: a completed build leaves its count behind.
            complete = (self._collection.metadata or {}).get("complete_count")
            if complete is not None and complete == self._collection.count():
                return 0
            reports = list(read_reports(self.archive))
            stored = set(self._collection.get(include=[])["ids"])
            missing = [r for r in reports if r.report_id not in stored]
            for batch in in_batches(missing, 128, "reports", progress):
                self._collection.add(
                    ids=[r.report_id for r in batch],
                    documents=[r.text for r in batch],
                    metadatas=[{"labels": "|".join(r.labels) or "normal"} for r in batch],
                )
            self._collection.modify(metadata={"complete_count": len(reports)})
            return len(missing)

    def search(self, text: str, k: int) -> list[ReferenceCase]:
        if not text.strip():
            raise RadpilotError("the findings text to match is empty")
        self.build(progress=log.info)  # first use embeds the reports: minutes on two cores
        found = self._collection.query(
            query_texts=[text], n_results=k, include=["documents", "metadatas", "distances"]
        )
        return [
            ReferenceCase(
                source="openi_report",
                case_id=case_id,
                similarity=round(1.0 - float(d), 4),
                labels=str((meta or {}).get("labels", "")).split("|"),
                text=document,
                licence=REPORTS_LICENCE,
            )  # fmt: skip
            for case_id, document, meta, d in zip(
                found["ids"][0],
                (found["documents"] or [[]])[0],
                (found["metadatas"] or [[]])[0],
                (found["distances"] or [[]])[0],
                strict=True,
            )  # fmt: skip
        ]


class ImageCases:
    """Image similarity over the NIH development images, by the findings model's features.

    The collection is named after the model (name and hash) so that switching weights builds
    a fresh index instead of comparing features from two different networks.
    """

    def __init__(
        self, state_dir: Path, data: Path | None, model: Any, *, chroma_url: str | None = None
    ) -> None:
        self.data = data
        self.model = model
        digest = model.identity.sha256[:12] if model.identity.sha256 else "unversioned"
        self._collection = chroma_client(state_dir, chroma_url).get_or_create_collection(
            f"nih_images_{digest}", embedding_function=None,
            configuration={"hnsw": {"space": "cosine"}},
        )  # fmt: skip
        self._lock = threading.Lock()

    def build(self, progress: Progress | None = None, records: list[Any] | None = None) -> int:
        """Embed the development images (or the given `NihRecord`s) not yet indexed."""
        from radpilot.data.devdata import read_nih
        from radpilot.tools.imaging import read_pixels

        if self.data is None or not (self.data / "nih" / "labels.jsonl").is_file():
            raise CasesUnavailableError(
                "image similarity needs the development data (set RADPILOT_DATA to a folder "
                "with nih/labels.jsonl); report similarity works without it"
            )
        with self._lock:
            records = records if records is not None else read_nih(self.data)
            stored = set(self._collection.get(include=[])["ids"])
            missing = [r for r in records if r.image not in stored]
            for batch in in_batches(missing, 16, "images", progress):
                self._collection.add(
                    ids=[r.image for r in batch],
                    embeddings=self.model.embed([read_pixels(self.data / r.image) for r in batch]),
                    metadatas=[
                        {"labels": "|".join(r.labels) or "No Finding", "patient": r.patient_id}
                        for r in batch
                    ],  # fmt: skip
                )
            return len(missing)

    def search(self, pixels: np.ndarray, k: int) -> list[ReferenceCase]:
        if self._collection.count() == 0:
            self.build(progress=log.info)
        found = self._collection.query(
            query_embeddings=self.model.embed([pixels]), n_results=k + 1,
            include=["metadatas", "distances"],
        )  # fmt: skip
        cases = [
            ReferenceCase(
                source="nih_image",
                case_id=case_id,
                similarity=round(1.0 - float(d), 4),
                labels=str((meta or {}).get("labels", "")).split("|"),
                licence=NIH_LICENCE,
            )  # fmt: skip
            for case_id, meta, d in zip(
                found["ids"][0],
                (found["metadatas"] or [[]])[0],
                (found["distances"] or [[]])[0],
                strict=True,
            )  # fmt: skip
        ]
        return [c for c in cases if c.similarity < SAME_IMAGE_SIMILARITY][:k]


@process_wide
def shared_report_cases(
    state_dir: Path, weights_dir: Path, *, chroma_url: str | None = None
) -> ReportCases:
    return ReportCases(state_dir, weights_dir, chroma_url=chroma_url)


@process_wide
def shared_image_cases(
    state_dir: Path, data: Path | None, model: Any, *, chroma_url: str | None = None
) -> ImageCases:
    return ImageCases(state_dir, data, model, chroma_url=chroma_url)
