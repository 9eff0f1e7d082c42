"""Deleting stored studies and artefacts: the files go, missing ids are fine, and a malformed
id is refused before it can name a path outside the store."""

from __future__ import annotations

from pathlib import Path

import pytest

from radpilot.agent.history import SessionRecord
from radpilot.agent.types import Answer, Message
from radpilot.core.contracts import Artefact, Evidence
from radpilot.core.errors import RadpilotError, StudyNotFoundError
from radpilot.tools.artefacts import ArtefactStore
from radpilot.tools.studies import StudyStore
from tests.factories import chest_like, png_bytes


def test_a_deleted_study_is_gone_and_its_neighbours_stay(tmp_path: Path) -> None:
    store = StudyStore(tmp_path / "studies", secret=b"k" * 32)
    gone, kept = (store.ingest(png_bytes(chest_like(seed=s)), "x.png") for s in (1, 2))
    store.delete(gone.id)
    assert not (tmp_path / "studies" / gone.id).exists()
    with pytest.raises(StudyNotFoundError):
        store.get(gone.id)
    assert store.get(kept.id) == kept
    store.delete(gone.id)  # already gone: fine, so a retried deletion finishes


@pytest.mark.parametrize("bad", ["", "..", "../studies", "st_a/b"])
def test_a_malformed_study_id_deletes_nothing(tmp_path: Path, bad: str) -> None:
    store = StudyStore(tmp_path / "studies", secret=b"k" * 32)
    study = store.ingest(png_bytes(chest_like()), "x.png")
    with pytest.raises(StudyNotFoundError):
        store.delete(bad)
    assert store.get(study.id) == study


def test_a_deleted_artefact_is_gone_and_bad_ids_are_refused(tmp_path: Path) -> None:
    store = ArtefactStore(tmp_path / "artefacts")
    gone, kept = (store.save_png(b"\x89PNG", "overlay") for _ in range(2))
    store.delete(gone.id)
    store.delete(gone.id)
    assert not (tmp_path / "artefacts" / gone.path).exists()
    assert store.path(kept).read_bytes() == b"\x89PNG"
    for bad in ("", "../artefacts/" + kept.id, "ar_x/y"):
        with pytest.raises(RadpilotError):
            store.delete(bad)
    assert store.path(kept).exists()


def test_the_session_lists_every_artefact_it_produced_once() -> None:
    def evidence(number: int, *ids: str) -> Evidence:
        artefacts = [Artefact(id=i, kind="overlay", path=f"{i}.png") for i in ids]
        return Evidence(id=f"E{number}", kind="model_output", tool="t", artefacts=artefacts)

    shown = Answer(evidence=[evidence(1, "ar_a"), evidence(3, "ar_c")])
    session = SessionRecord(
        evidence=[evidence(1, "ar_a"), evidence(2, "ar_b")],
        messages=[Message(role="assistant", text="", answer=shown)],
    )
    assert session.artefact_ids() == ["ar_a", "ar_b", "ar_c"]
