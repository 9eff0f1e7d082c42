"""The guideline corpus: short notes written by the project, each with its source.

A note is a Markdown file under `radpilot/knowledge/corpus/<topic>/` with YAML front matter.
The schema below is the contract: a note without a source, a review date or a known topic does
not load, so nothing uncited can reach the index or the knowledge graph.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Iterable
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from radpilot.core.contracts import Citation
from radpilot.core.errors import RadpilotError
from radpilot.core.findings import NIH_FINDINGS

log = logging.getLogger(__name__)

Topic = Literal[
    "pneumothorax",
    "effusion",
    "pleural_thickening",
    "pneumonia",
    "infiltration",
    "cardiomegaly",
    "edema",
    "nodule_mass",
    "atelectasis",
    "emphysema",
    "fibrosis",
    "hernia",
    "lines_tubes",
    "vocabulary",
    "radiography",
]

NOTE_ID = r"^[a-z0-9]+(-[a-z0-9]+)*$"


class CorpusError(RadpilotError):
    code = "corpus_invalid"


class Source(BaseModel):
    """Where the facts of a note come from; rendered as the note's citation."""

    model_config = ConfigDict(extra="forbid")

    body: str = Field(min_length=2, description="issuing body, e.g. 'British Thoracic Society'")
    title: str = Field(min_length=5)
    year: int = Field(ge=1950, le=2100)
    section: str = Field(min_length=2)
    doi: str | None = Field(default=None, pattern=r"^10\.\d{4,9}/\S+$")
    url: str | None = Field(default=None, pattern=r"^https://\S+$")

    @model_validator(mode="after")
    def _locatable(self) -> Source:
        if not (self.doi or self.url):
            raise ValueError("a source needs a DOI or a URL")
        return self

    @property
    def link(self) -> str:
        return f"https://doi.org/{self.doi}" if self.doi else str(self.url)


class GraphLink(BaseModel):
    """One path of the knowledge graph: finding -> differential -> next step."""

    model_config = ConfigDict(extra="forbid")

    finding: str = Field(min_length=2, max_length=60)
    differential: str | None = Field(default=None, max_length=80)
    next_step: str | None = Field(default=None, max_length=200)

    @model_validator(mode="after")
    def _leads_somewhere(self) -> GraphLink:
        if not (self.differential or self.next_step):
            raise ValueError("a link needs a differential, a next step, or both")
        return self


class Note(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=NOTE_ID)
    title: str = Field(min_length=5)
    topic: Topic
    findings: list[str] = Field(default_factory=list)
    source: Source
    reviewed: dt.date
    links: list[GraphLink] = Field(default_factory=list)
    text: str = Field(min_length=80, max_length=2500)

    @model_validator(mode="after")
    def _known_findings(self) -> Note:
        unknown = [f for f in self.findings if f not in NIH_FINDINGS]
        if unknown:
            raise ValueError(f"unknown findings {unknown}; use the NIH names {NIH_FINDINGS}")
        return self

    @model_validator(mode="after")
    def _no_instructions(self) -> Note:
        # Notes are quoted verbatim; one that talks to the system ("ignore previous
        # instructions", "call compare_studies") is a poisoned note, refused at load.
        from radpilot.core.instructions import split_instructions

        instructions = split_instructions(self.text)[1]
        if instructions:
            raise ValueError(f"instruction-like text is not guideline content: {instructions[0]!r}")
        return self

    @property
    def citation(self) -> Citation:
        return Citation(
            document=self.source.title,
            section=self.source.section,
            issuing_body=self.source.body,
            year=self.source.year,
            url=self.source.link,
        )

    @property
    def fingerprint(self) -> str:
        """Changes whenever anything that is indexed changes; drives incremental rebuilds."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:16]


def parse_note(text: str, origin: str) -> Note:
    import yaml

    if not text.startswith("---\n"):
        raise CorpusError(f"{origin}: a note starts with '---' and YAML front matter")
    try:
        header, body = text[4:].split("\n---\n", 1)
        meta = yaml.safe_load(header) or {}
    except (ValueError, yaml.YAMLError) as exc:
        raise CorpusError(f"{origin}: unreadable front matter ({exc})") from None
    if not isinstance(meta, dict):
        raise CorpusError(f"{origin}: front matter must be a mapping")
    try:
        return Note.model_validate({**meta, "text": " ".join(body.split())})
    except ValidationError as exc:
        raise CorpusError(f"{origin}: {exc}") from None


def load_notes(paths: Iterable[Path]) -> list[Note]:
    notes = [parse_note(path.read_text(encoding="utf-8"), str(path)) for path in sorted(paths)]
    seen: dict[str, int] = {}
    for note in notes:
        seen[note.id] = seen.get(note.id, 0) + 1
    duplicated = sorted(i for i, n in seen.items() if n > 1)
    if duplicated:
        raise CorpusError(f"duplicate note ids: {', '.join(duplicated)}")
    return notes


def corpus_files(root: Path | None = None) -> list[Path]:
    folder = root or Path(str(resources.files("radpilot.knowledge").joinpath("corpus")))
    return sorted(folder.glob("*/*.md"))


@cache
def packaged_notes() -> tuple[Note, ...]:
    """The corpus shipped with radpilot (parsed once per process)."""
    return tuple(load_notes(corpus_files()))


def site_notes(folder: Path) -> tuple[list[Note], list[str]]:
    """A site's own notes (`RADPILOT_KNOWLEDGE_DIR`, `*.md` at any depth): the valid ones, and
    one line per refused note. A bad or poisoned site note is refused alone: it never takes the
    knowledge base down, and the refusal is logged."""
    accepted: list[Note] = []
    refused: list[str] = []
    packaged = {note.id for note in packaged_notes()}
    for path in sorted(folder.rglob("*.md")):
        try:
            note = parse_note(path.read_text(encoding="utf-8", errors="replace"), str(path))
        except CorpusError as error:
            refused.append(error.message)
            continue
        if note.id in packaged or any(n.id == note.id for n in accepted):
            refused.append(f"{path}: note id {note.id!r} is already taken")
            continue
        accepted.append(note)
    for line in refused:
        log.warning("site note refused: %s", line)
    return accepted, refused
