"""Hybrid retrieval over the guideline notes: Chroma (dense MiniLM) + BM25, fused by rank.

Dense retrieval finds paraphrases ("collapsed lung" → pneumothorax); BM25 finds exact terms
(drug names, "Light's criteria", "T4"). Reciprocal rank fusion combines the two rankings
without calibrating their scores against each other.

The Chroma collection lives under `<state_dir>/knowledge/chroma` (or on the Chroma server of
`RADPILOT_CHROMA_URL`) and is built on first use.
Each note is stored with a fingerprint of its content, so a rebuild re-embeds only the notes
that changed (and drops the ones that were deleted).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from radpilot.core.contracts import Citation
from radpilot.core.errors import RadpilotError
from radpilot.knowledge.embedding import MiniLMEmbeddingFunction
from radpilot.knowledge.lexical import LexicalIndex
from radpilot.knowledge.notes import Note, packaged_notes, site_notes
from radpilot.knowledge.store import chroma_client
from radpilot.shared import process_wide

COLLECTION = "guideline_notes"
RRF_K = 60  # the constant of Cormack et al. (2009); damps the influence of the top ranks
# An off-topic query (gibberish, another language) comes back flagged as weak when its best
# dense match is below WEAK_SIMILARITY and no query term occurs in any note, or below
# VERY_WEAK_SIMILARITY whatever the terms. Of the 230 evaluation questions, the lowest best
# match is 0.28 and 99% are above 0.35.
WEAK_SIMILARITY = 0.30
VERY_WEAK_SIMILARITY = 0.25
Mode = Literal["hybrid", "dense", "lexical"]


class Filters(BaseModel):
    finding: str | None = Field(default=None, description="NIH finding name, e.g. 'Effusion'")
    body: str | None = Field(default=None, description="issuing body, exact name")
    year_from: int | None = Field(default=None, description="source published in or after")

    def admits(self, note: Note) -> bool:
        return (
            (self.finding is None or self.finding in note.findings)
            and (self.body is None or self.body == note.source.body)
            and (self.year_from is None or note.source.year >= self.year_from)
        )

    def chroma_where(self) -> dict[str, Any] | None:
        clauses: list[dict[str, Any]] = []
        if self.finding:
            clauses.append({f"finding:{self.finding}": True})
        if self.body:
            clauses.append({"body": self.body})
        if self.year_from is not None:
            clauses.append({"year": {"$gte": self.year_from}})
        if not clauses:
            return None
        return clauses[0] if len(clauses) == 1 else {"$and": clauses}


class Passage(BaseModel):
    note_id: str
    title: str
    text: str
    topic: str
    findings: list[str]
    citation: Citation
    reviewed: str
    score: float = Field(description="fused reciprocal-rank score (higher is better)")
    similarity: float | None = Field(description="cosine similarity of the dense match")
    lexical: float = Field(description="BM25 score (0: no query term, or dense mode)")


class SearchResult(BaseModel):
    query: str
    mode: Mode
    passages: list[Passage]
    weak: bool = Field(description="nothing in the corpus matches the query well")


class BuildReport(BaseModel):
    added: list[str] = Field(default_factory=list)
    updated: list[str] = Field(default_factory=list)
    removed: list[str] = Field(default_factory=list)
    unchanged: int = 0


def indexed_text(note: Note) -> str:
    return f"{note.title}. {note.text}"


def note_metadata(note: Note) -> dict[str, Any]:
    flags: dict[str, Any] = {f"finding:{finding}": True for finding in note.findings}
    return {
        **flags,
        "fingerprint": note.fingerprint,
        "topic": note.topic,
        "body": note.source.body,
        "year": note.source.year,
    }


def is_weak(best_similarity: float | None, any_term_matched: bool) -> bool:
    if best_similarity is None:  # lexical mode
        return not any_term_matched
    if best_similarity < VERY_WEAK_SIMILARITY:
        return True
    return best_similarity < WEAK_SIMILARITY and not any_term_matched


def reciprocal_rank_fusion(rankings: Sequence[Sequence[str]], k: int = RRF_K) -> dict[str, float]:
    fused: dict[str, float] = {}
    for ranking in rankings:
        for rank, key in enumerate(ranking):
            fused[key] = fused.get(key, 0.0) + 1.0 / (k + rank + 1)
    return fused


class GuidelineIndex:
    """Build and query the guideline index (thread-safe; one per state dir and process)."""

    def __init__(
        self,
        state_dir: Path,
        weights_dir: Path,
        notes: Sequence[Note],
        *,
        chroma_url: str | None = None,
    ) -> None:
        self.notes = {note.id: note for note in notes}
        self._order = list(self.notes)
        self._position = {note_id: n for n, note_id in enumerate(self._order)}
        self._embed = MiniLMEmbeddingFunction(str(weights_dir))
        self._collection = chroma_client(state_dir, chroma_url).get_or_create_collection(
            COLLECTION,
            embedding_function=self._embed,
            configuration={"hnsw": {"space": "cosine"}},
        )
        self._lexical = LexicalIndex([indexed_text(self.notes[i]) for i in self._order])
        self._lock = threading.Lock()
        self._synced = False

    def build(self, progress: Callable[[str], None] | None = None) -> BuildReport:
        """Bring the collection in line with the notes; only changed notes are re-embedded."""
        with self._lock:
            stored = self._collection.get(include=["metadatas"])
            fingerprints = {
                note_id: (meta or {}).get("fingerprint")
                for note_id, meta in zip(stored["ids"], stored["metadatas"] or [], strict=False)
            }
            report = BuildReport()
            changed: list[Note] = []
            for note in self.notes.values():
                if note.id not in fingerprints:
                    report.added.append(note.id)
                elif fingerprints[note.id] != note.fingerprint:
                    report.updated.append(note.id)
                else:
                    report.unchanged += 1
                    continue
                changed.append(note)
            report.removed = sorted(set(fingerprints) - set(self.notes))
            if report.removed:
                self._collection.delete(ids=report.removed)
            if report.updated:
                # Stale flags (a finding removed from a note) must not survive an upsert.
                self._collection.delete(ids=report.updated)
            for start in range(0, len(changed), 32):
                batch = changed[start : start + 32]
                self._collection.add(
                    ids=[n.id for n in batch],
                    documents=[indexed_text(n) for n in batch],
                    metadatas=[note_metadata(n) for n in batch],
                )
                if progress:
                    progress(f"embedded {start + len(batch)}/{len(changed)} notes")
            self._synced = True
            return report

    def search(
        self, query: str, k: int = 5, filters: Filters | None = None, mode: Mode = "hybrid"
    ) -> SearchResult:
        query = " ".join(query.split())
        if not query:
            raise RadpilotError("the search query is empty")
        if not self._synced:
            self.build()
        filters = filters or Filters()
        admitted = [i for i in self._order if filters.admits(self.notes[i])]
        if not admitted:
            return SearchResult(query=query, mode=mode, passages=[], weak=True)
        depth = min(len(admitted), max(4 * k, 20))

        # Each mode computes only its own ranking, so their latencies compare fairly.
        similarity = self._dense(query, depth, filters) if mode != "lexical" else {}
        lexical = self._lexical_scores(query, admitted) if mode != "dense" else {}
        dense_rank = sorted(similarity, key=lambda i: -similarity[i])
        lexical_rank = [i for i in sorted(lexical, key=lambda i: -lexical[i]) if lexical[i] > 0]
        fused = reciprocal_rank_fusion([dense_rank[:depth], lexical_rank[:depth]])
        best = sorted(fused, key=lambda i: -fused[i])[:k]
        weak = is_weak(max(similarity.values(), default=None), bool(lexical_rank))
        return SearchResult(
            query=query,
            mode=mode,
            weak=weak,
            passages=[
                self._passage(i, fused[i], similarity.get(i), lexical.get(i, 0.0)) for i in best
            ],
        )

    def _dense(self, query: str, depth: int, filters: Filters) -> dict[str, float]:
        found = self._collection.query(
            query_texts=[query], n_results=depth, where=filters.chroma_where(),
            include=["distances"],
        )  # fmt: skip
        distances = (found["distances"] or [[]])[0]
        return {i: 1.0 - float(d) for i, d in zip(found["ids"][0], distances, strict=True)}

    def _lexical_scores(self, query: str, admitted: list[str]) -> dict[str, float]:
        scores = self._lexical.scores(query)
        return {i: float(scores[self._position[i]]) for i in admitted}

    def _passage(self, note_id: str, score: float, sim: float | None, lex: float) -> Passage:
        note = self.notes[note_id]
        return Passage(
            note_id=note.id,
            title=note.title,
            text=note.text,
            topic=note.topic,
            findings=note.findings,
            citation=note.citation,
            reviewed=note.reviewed.isoformat(),
            score=round(score, 6),
            similarity=None if sim is None else round(sim, 4),
            lexical=round(lex, 4),
        )


@process_wide
def shared_index(
    state_dir: Path,
    weights_dir: Path,
    site_dir: Path | None = None,
    *,
    chroma_url: str | None = None,
) -> GuidelineIndex:
    """The index of the packaged corpus plus a site's own notes, opened once per process."""
    notes = list(packaged_notes())
    if site_dir is not None:
        notes += site_notes(site_dir)[0]
    return GuidelineIndex(state_dir, weights_dir, notes, chroma_url=chroma_url)
