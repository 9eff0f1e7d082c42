"""Guideline retrieval latency and quality, the three modes side by side in one run.

Builds the index in a temporary state dir, warms it with one query, then runs every question
of the retrieval set through dense, BM25 and hybrid search. Prints recall@1/@5, MRR, p50/p95
query latency per mode, and hybrid latency relative to dense (the fusion's cost). Target:
hybrid p50 <= 20 ms on 2 CPU cores with a warm process; hybrid recall@5 >= 0.95.

    python bench/bench_retrieval.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from common import Target, write_results

TARGETS = [
    Target("modes.hybrid.latency_ms_p50", "<=", 20, "ms"),
    Target("modes.hybrid.recall_at_5", ">=", 0.95),
]


def main() -> int:
    from radpilot.evals import retrieval_questions
    from radpilot.knowledge.evaluation import evaluate_retrieval, load_questions, question_files
    from radpilot.knowledge.index import GuidelineIndex
    from radpilot.knowledge.notes import packaged_notes
    from radpilot.settings import Settings

    with tempfile.TemporaryDirectory() as state:
        weights = Settings().weights_dir  # reuse the extracted MiniLM weights
        index = GuidelineIndex(Path(state), weights, packaged_notes())
        questions = load_questions(question_files(retrieval_questions()), set(index.notes))
        result = evaluate_retrieval(index, questions)
    modes = {m.mode: m for m in result.modes}
    print(f"{result.notes} notes, {result.questions} questions")
    print(f"{'mode':8} {'R@1':>6} {'R@5':>6} {'MRR':>6} {'p50 ms':>8} {'p95 ms':>8}")
    for m in result.modes:
        print(f"{m.mode:8} {m.recall_at_1:6.3f} {m.recall_at_5:6.3f} {m.mrr:6.3f} "
              f"{m.latency_ms_p50:8.2f} {m.latency_ms_p95:8.2f}")  # fmt: skip
    ratio = modes["hybrid"].latency_ms_p50 / modes["dense"].latency_ms_p50
    print(f"hybrid / dense p50 latency: {ratio:.3f}")
    figures = {**result.model_dump(), "hybrid_over_dense_p50": round(ratio, 3)}
    write_results("retrieval", figures, TARGETS)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    sys.exit(main())
