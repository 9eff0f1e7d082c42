"""Similar reference cases: public radiology reports by text, development images by image.

These are *reference cases*, never evidence about the patient in front of the user: they show
what similar reports said or what labels similar-looking images carried.

- Reports: the 3,955 OpenI / Indiana University chest X-ray reports shipped inside the
  torchxrayvision wheel (`NLMCXR_reports.tgz`, CC BY-NC-ND 4.0), cited by report id, indexed by
  their findings and impression text with MiniLM in Chroma.
- Images: the NIH ChestX-ray14 development images of the *training* patients only, indexed by
  the findings classifier's penultimate features (global average pooled, unit length),
  returning their NIH labels. Validation and test patients are never indexed (they are what the
  models are evaluated on), and a search never returns the asking patient's own images.

The report index is small and built on first use; the image index takes minutes to build, so it
is built once by `radpilot kb build-cases` and kept under the state dir, and a query against a
missing or unfinished index fails at once with `CasesUnavailableError` instead of building it
inside a conversation turn.
"""

from __future__ import annotations

import logging
import tarfile
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
from pydantic import BaseModel, Field

from radpilot.core.errors import RadpilotError
from radpilot.data.devdata import read_nih, records_in, split_of
from radpilot.knowledge.embedding import MiniLMEmbeddingFunction
from radpilot.knowledge.store import chroma_client
from radpilot.shared import process_wide

log = logging.getLogger(__name__)

REPORTS_COLLECTION = "openi_reports"
REPORTS_LICENCE = "CC BY-NC-ND 4.0 (Indiana University / OpenI chest X-ray collection)"
NIH_LICENCE = "NIH Clinical Center, unrestricted use (Wang et al., ChestX-ray8, CVPR 2017)"
# Hits this close to the query image are the query image itself (or an exact copy of it).
SAME_IMAGE_SIMILARITY = 0.9999
# Named after the split it holds and the model (see `ImageCases`). The names used before the
# split existed (`nih_images_<digest>`) held test patients too: such indexes are never read.
IMAGES_COLLECTION_PREFIX = "nih_train_images_"
LEGACY_IMAGES_COLLECTION_PREFIX = "nih_images_"
BUILD_CASES_COMMAND = "radpilot kb build-cases --data DIR"
# Neighbours fetched beyond k, so that leaving out the asking patient's images (at most 12 per
# patient in the development data) usually still leaves k; a search widens it when not.
SEARCH_MARGIN = 16
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
    """Consecutive batches, reporting progress (and the time left) after each one is processed."""
    started = time.monotonic()
    for start in range(0, len(items), size):
        yield items[start : start + size]
        if progress:
            done = min(start + size, len(items))
            message = f"embedded {done}/{len(items)} {what} ({done * 100 // len(items)}%)"
            if done < len(items):
                left = (time.monotonic() - started) / done * (len(items) - done)
                message += f", about {_duration(left)} left"
            progress(message)


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


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


def development_data(data: Path | None) -> Path:
    """The development data folder the image index is built from, or why it cannot be."""
    if data is not None and (data / "nih" / "labels.jsonl").is_file():
        return data
    missing = "no folder was given" if data is None else f"{data} has none"
    raise CasesUnavailableError(
        f"the image index is built from the development data's nih/labels.jsonl, and "
        f"{missing}: pass --data DIR or set RADPILOT_DATA (report similarity works without it)"
    )


class ImageHit(BaseModel):
    """One nearest neighbour in the image index, before the patient filter."""

    image: str
    patient: str
    labels: list[str]
    similarity: float

    def case(self) -> ReferenceCase:
        return ReferenceCase(
            source="nih_image", case_id=self.image, similarity=round(self.similarity, 4),
            labels=self.labels, licence=NIH_LICENCE,
        )  # fmt: skip


def shown_hits(hits: list[ImageHit], patient: str | None) -> list[ImageHit]:
    """The hits a user may see: training-split patients other than the asking one.

    The asking patient is `patient` when the study kept an identity, and in any case the patient
    of an indexed copy of the query image itself: an uploaded PNG keeps no identity through
    de-identification, but its copy in the index names its patient, whose other studies would
    otherwise come back as "similar cases" (the copy itself goes with them). The split is checked
    again here so that the guarantee does not rest on how the index was built.
    """
    asking = {hit.patient for hit in hits if hit.similarity >= SAME_IMAGE_SIMILARITY}
    if patient:
        asking.add(patient)
    return [h for h in hits if h.patient not in asking and split_of(h.patient) == "train"]


class ImageIndexStatus(BaseModel):
    collection: str
    indexed: int = Field(description="images in the index")
    complete: bool = Field(description="the last build finished (an interrupted one did not)")


class ImageCases:
    """Image similarity over the training patients' NIH development images.

    The collection is named after the split and the model (name and hash): switching weights
    builds a fresh index instead of comparing features from two different networks, and an
    index from before the split (test patients included) is never reused.
    """

    def __init__(
        self, state_dir: Path, data: Path | None, model: Any, *, chroma_url: str | None = None
    ) -> None:
        self.data = data
        self.model = model
        digest = model.identity.sha256[:12] if model.identity.sha256 else "unversioned"
        self._client = chroma_client(state_dir, chroma_url)
        self._collection = self._client.get_or_create_collection(
            IMAGES_COLLECTION_PREFIX + digest, embedding_function=None,
            configuration={"hnsw": {"space": "cosine"}},
        )  # fmt: skip
        self._lock = threading.Lock()

    def status(self) -> ImageIndexStatus:
        indexed = self._collection.count()
        # Read afresh: a collection object keeps the metadata it was opened with, and the index
        # is usually built by another process (`kb build-cases`) while a server is running.
        stored = self._client.get_collection(self._collection.name, embedding_function=None)
        complete = (stored.metadata or {}).get("complete_count")
        return ImageIndexStatus(collection=self._collection.name, indexed=indexed,
                                complete=indexed > 0 and complete == indexed)  # fmt: skip

    def build(self, progress: Progress | None = None, records: list[Any] | None = None) -> int:
        """Embed the training patients' development images (or those among the given
        `NihRecord`s) not yet indexed; returns how many were added. Incremental: an interrupted
        build resumes where it stopped, and only a finished one marks the index complete."""
        from radpilot.tools.imaging import read_pixels

        data = development_data(self.data)
        with self._lock:
            self._remove_legacy_indexes(progress)
            wanted = records_in(records if records is not None else read_nih(data), "train")
            stored = set(self._collection.get(include=[])["ids"])
            missing = [r for r in wanted if r.image not in stored]
            if progress:
                patients = len({r.patient_id for r in wanted})
                progress(f"{len(wanted)} images of {patients} training patients "
                         f"({len(wanted) - len(missing)} already indexed)")  # fmt: skip
            for batch in in_batches(missing, 16, "images", progress):
                self._collection.add(
                    ids=[r.image for r in batch],
                    embeddings=self.model.embed([read_pixels(data / r.image) for r in batch]),
                    metadatas=[
                        {"labels": "|".join(r.labels) or "No Finding", "patient": r.patient_id}
                        for r in batch
                    ],  # fmt: skip
                )
            self._collection.modify(metadata={"complete_count": self._collection.count()})
            return len(missing)

    def _remove_legacy_indexes(self, progress: Progress | None) -> None:
        """Delete the indexes from before the split: they hold test patients' images."""
        for collection in self._client.list_collections():
            if collection.name.startswith(LEGACY_IMAGES_COLLECTION_PREFIX):
                self._client.delete_collection(collection.name)
                if progress:
                    progress(f"removed the old image index {collection.name} (it held "
                             "validation and test patients)")  # fmt: skip

    def search(
        self, pixels: np.ndarray, k: int, *, patient: str | None = None
    ) -> list[ReferenceCase]:
        """The k nearest training-split images from patients other than the asking one
        (`patient`: its identity, when the study kept one; see `shown_hits`)."""
        indexed = self._require_ready()
        query = self.model.embed([pixels])
        wanted = k + SEARCH_MARGIN
        while True:
            shown = shown_hits(self._nearest(query, min(wanted, indexed)), patient)
            if len(shown) >= k or wanted >= indexed:
                return [hit.case() for hit in shown[:k]]
            wanted *= 4

    def _require_ready(self) -> int:
        """The number of images indexed; `CasesUnavailableError` unless a build finished.

        Building inside a query would hold a conversation turn for minutes (a full build embeds
        about a thousand images), so the user is told to build it once instead."""
        status = self.status()
        if status.complete:
            return status.indexed
        if status.indexed == 0:
            state = "is not built"
        else:
            state = f"is unfinished ({status.indexed} images: a build stopped or is running)"
        raise CasesUnavailableError(
            f"similar images need the image index, which {state}: run `{BUILD_CASES_COMMAND}` "
            "once (minutes on a CPU; the index is kept). Similar reports, from a findings "
            "text, work without it"
        )

    def _nearest(self, query: np.ndarray, n: int) -> list[ImageHit]:
        found = self._collection.query(
            query_embeddings=query, n_results=n, include=["metadatas", "distances"]
        )
        return [
            ImageHit(
                image=image,
                patient=str((meta or {}).get("patient", "")),
                labels=str((meta or {}).get("labels", "")).split("|"),
                similarity=1.0 - float(d),
            )  # fmt: skip
            for image, meta, d in zip(
                found["ids"][0],
                (found["metadatas"] or [[]])[0],
                (found["distances"] or [[]])[0],
                strict=True,
            )  # fmt: skip
        ]


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
