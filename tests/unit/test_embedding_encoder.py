"""The MiniLM encoder runs as a TorchScript trace only where the trace gives the eager
model's output; anything the tracer cannot follow falls back to the eager model."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from radpilot.knowledge.embedding import SentenceEmbedder, traced_encoder


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("weights")


@pytest.fixture(scope="module")
def embedder(weights: Path) -> SentenceEmbedder:
    return SentenceEmbedder(weights)


def test_the_traced_encoder_gives_the_eager_output_on_unseen_lengths(
    embedder: SentenceEmbedder,
) -> None:
    assert embedder._encode.__name__ == "encode"  # the trace passed its check
    texts = ["Is there an effusion?", "left apical pneumothorax after a central line, size?"]
    batch = embedder.tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        traced = embedder._encode(batch["input_ids"], batch["attention_mask"])
        eager = embedder.model(**batch).last_hidden_state
    assert torch.allclose(traced, eager, atol=1e-5)


def test_a_model_the_tracer_cannot_follow_runs_eagerly(embedder: SentenceEmbedder) -> None:
    class Untraceable(torch.nn.Module):
        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> object:
            raise RuntimeError("not traceable")

    assert traced_encoder(Untraceable(), embedder.tokenizer).__name__ == "eager"


def test_embeddings_are_unit_vectors_and_similar_texts_are_close(
    embedder: SentenceEmbedder,
) -> None:
    vectors = embedder.embed(["pleural effusion", "fluid in the pleural space", "a fractured rib"])
    assert vectors.shape == (3, 384)
    assert torch.allclose(torch.from_numpy(vectors).norm(dim=1), torch.ones(3), atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]


def test_loading_prints_nothing(weights: Path) -> None:
    # The CLI's contract is one `radpilot: error:` line on stderr for a bad input; a library
    # warning printed while the encoder is traced would break it. A fresh process: warnings
    # that print once per process would already be spent in this one.
    load = (
        "from pathlib import Path; from radpilot.knowledge.embedding import SentenceEmbedder; "
        f"SentenceEmbedder(Path({str(weights)!r}))"
    )
    done = subprocess.run([sys.executable, "-c", load], capture_output=True, text=True, check=True)
    assert done.stdout == "" and done.stderr == ""
