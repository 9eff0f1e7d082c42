"""BM25 over short texts (bm25s), with English stop words and Snowball stemming.

Stemming matters for radiology wording: "effusions", "effusion" and "effused" meet at one stem.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def _stemmer() -> Any:
    import Stemmer

    return Stemmer.Stemmer("english")


class LexicalIndex:
    def __init__(self, texts: Sequence[str]) -> None:
        import bm25s

        self._bm25s = bm25s
        self._stem = _stemmer()
        self._retriever = bm25s.BM25()
        self._retriever.index(self._tokens(texts), show_progress=False)
        self.size = len(texts)

    def _tokens(self, texts: Sequence[str]) -> list[list[str]]:
        tokens: list[list[str]] = self._bm25s.tokenize(
            list(texts), stopwords="en", stemmer=self._stem, return_ids=False, show_progress=False
        )
        return tokens

    def scores(self, query: str) -> np.ndarray:
        """One BM25 score per indexed text (0 where no query term occurs)."""
        terms = self._tokens([query])[0]
        if not terms:
            return np.zeros(self.size, dtype=np.float32)
        return np.asarray(self._retriever.get_scores(terms), dtype=np.float32)
