"""Retrieval evaluation: recall@1/@5, MRR and query latency for dense, BM25 and hybrid.

The questions (`radpilot/evals/retrieval/*.yaml`) were written from the notes, each with the
ids of the notes that answer it. A question is a hit at k when any gold note is in the top k.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import get_args

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field

from radpilot.knowledge.index import GuidelineIndex, Mode
from radpilot.knowledge.notes import CorpusError


class Question(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    question: str = Field(min_length=3)
    gold: list[str] = Field(min_length=1)


class ModeScores(BaseModel):
    mode: Mode
    questions: int
    recall_at_1: float
    recall_at_5: float
    mrr: float
    latency_ms_p50: float
    latency_ms_p95: float
    misses_at_5: list[str] = Field(description="ids of questions with no gold note in the top 5")


class RetrievalEvaluation(BaseModel):
    notes: int
    questions: int
    modes: list[ModeScores]


def question_files(folder: Path) -> list[Path]:
    """The question YAML files of a folder (the project's own set is
    `radpilot.evals.retrieval_questions()`; knowledge never reads the evals package itself)."""
    return sorted(folder.glob("*.yaml"))


def load_questions(paths: list[Path], known_notes: set[str]) -> list[Question]:
    questions = []
    for path in paths:
        for item in (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("questions", []):
            question = Question.model_validate(item)
            unknown = set(question.gold) - known_notes
            if unknown:
                raise CorpusError(f"{path}: {question.id} cites unknown notes {sorted(unknown)}")
            questions.append(question)
    return questions


def score_mode(index: GuidelineIndex, questions: list[Question], mode: Mode) -> ModeScores:
    hits1 = hits5 = 0
    reciprocal_ranks, latencies, misses = [], [], []
    for question in questions:
        started = time.perf_counter()
        result = index.search(question.question, k=10, mode=mode)
        latencies.append((time.perf_counter() - started) * 1000.0)
        ranked = [p.note_id for p in result.passages]
        first = next((n for n, note_id in enumerate(ranked) if note_id in question.gold), None)
        hits1 += first == 0
        hits5 += first is not None and first < 5
        reciprocal_ranks.append(0.0 if first is None else 1.0 / (first + 1))
        if first is None or first >= 5:
            misses.append(question.id)
    count = len(questions)
    return ModeScores(
        mode=mode,
        questions=count,
        recall_at_1=round(hits1 / count, 4),
        recall_at_5=round(hits5 / count, 4),
        mrr=round(float(np.mean(reciprocal_ranks)), 4),
        latency_ms_p50=round(float(np.percentile(latencies, 50)), 2),
        latency_ms_p95=round(float(np.percentile(latencies, 95)), 2),
        misses_at_5=misses,
    )


def evaluate_retrieval(index: GuidelineIndex, questions: list[Question]) -> RetrievalEvaluation:
    index.build()
    index.search("warm-up query about pleural effusion")  # the first query loads the model
    return RetrievalEvaluation(
        notes=len(index.notes),
        questions=len(questions),
        modes=[score_mode(index, questions, mode) for mode in get_args(Mode)],
    )
