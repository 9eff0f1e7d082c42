"""Similar images without leakage, on a tiny made-up data set and a real embedded Chroma: only
training-split patients are indexed and shown, never the asking patient's own images, and a
query against an index that was never built (or not finished) fails at once with the command
that builds it."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from radpilot.core.contracts import ModelIdentity
from radpilot.data.devdata import NihRecord, Split, split_of
from radpilot.knowledge.cases import (
    IMAGES_COLLECTION_PREFIX,
    CasesUnavailableError,
    ImageCases,
    ImageHit,
    ReferenceCase,
    in_batches,
    shown_hits,
)
from radpilot.knowledge.store import chroma_client
from radpilot.tools.imaging import read_pixels


def patient_in(split: Split, skip: int = 0) -> str:
    """A made-up NIH patient id that the patient-level split puts in `split`."""
    ids = (f"nih-{n}" for n in range(1, 10_000) if split_of(f"nih-{n}") == split)
    return [next(ids) for _ in range(skip + 1)][-1]


A, B, C = patient_in("train"), patient_in("train", 1), patient_in("train", 2)
TEST, VAL = patient_in("test"), patient_in("val")


class GreyModel:
    """Stands in for the findings model: an image's feature is the angle of its mean grey,
    so that how alike two images are is set by their grey levels."""

    identity = ModelIdentity(name="grey", version="1", sha256="ab" * 32)

    def embed(self, pixels: list[np.ndarray]) -> np.ndarray:
        angles = [3.0 * float(p.mean()) for p in pixels]
        return np.array([[math.cos(a), math.sin(a)] for a in angles], dtype=np.float32)


def write_data(root: Path, images: dict[str, tuple[str, int]]) -> Path:
    """A development data folder: `images` maps a file name to its patient and grey level."""
    folder = root / "data"
    (folder / "nih" / "images").mkdir(parents=True)
    rows = []
    for name, (patient, grey) in images.items():
        path = f"nih/images/{name}"
        Image.fromarray(np.full((16, 16), grey, dtype=np.uint8)).save(folder / path)
        rows.append(NihRecord(image=path, patient_id=patient, labels=[f"label-{grey}"]))
    lines = [row.model_dump_json() for row in rows]
    (folder / "nih" / "labels.jsonl").write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture
def data(tmp_path: Path) -> Path:
    # The test and validation images are the nearest to A's: they would be found if indexed.
    return write_data(tmp_path, {
        "a0.png": (A, 100), "a1.png": (A, 115), "t0.png": (TEST, 105), "v0.png": (VAL, 95),
        "b0.png": (B, 130), "c0.png": (C, 170),
    })  # fmt: skip


def cases_in(tmp_path: Path, data: Path | None) -> ImageCases:
    return ImageCases(tmp_path / "state", data, GreyModel())


def ids(cases: list[ReferenceCase]) -> list[str]:
    return [c.case_id.removeprefix("nih/images/") for c in cases]


def test_the_index_holds_training_patients_only(tmp_path: Path, data: Path) -> None:
    index = cases_in(tmp_path, data)
    assert index.build() == 4 and index.build() == 0  # a second build embeds nothing
    status = index.status()
    assert status.indexed == 4 and status.complete
    assert status.collection == IMAGES_COLLECTION_PREFIX + "abababababab"
    assert "train" in status.collection


def test_records_given_to_build_are_filtered_by_split_too(tmp_path: Path, data: Path) -> None:
    from radpilot.data.devdata import read_nih

    index = cases_in(tmp_path, data)
    assert index.build(records=read_nih(data)[:4]) == 2  # a0, a1 (t0 and v0 are left out)


def test_the_asking_patients_own_images_never_come_back(tmp_path: Path, data: Path) -> None:
    index = cases_in(tmp_path, data)
    index.build()
    # An uploaded copy of a0 keeps no identity, but its copy in the index names patient A.
    found = index.search(read_pixels(data / "nih/images/a0.png"), k=3)
    assert ids(found) == ["b0.png", "c0.png"]
    # A patient named by the caller is left out as well, whatever the image.
    assert ids(index.search(read_pixels(data / "nih/images/t0.png"), k=2, patient=A)) == [
        "b0.png", "c0.png",
    ]  # fmt: skip
    # Without a name or a copy, A's images are ordinary reference cases.
    near_a = index.search(read_pixels(data / "nih/images/t0.png"), k=2)
    assert ids(near_a) == ["a0.png", "a1.png"]
    assert near_a[0].labels == ["label-100"] and near_a[0].source == "nih_image"


def test_a_patient_with_many_images_still_leaves_k_others(tmp_path: Path) -> None:
    many = {f"a{n}.png": (A, 100 + n) for n in range(30)}
    data = write_data(tmp_path, many | {"b0.png": (B, 200), "c0.png": (C, 220)})
    index = cases_in(tmp_path, data)
    index.build()
    found = index.search(read_pixels(data / "nih/images/a0.png"), k=2)
    assert ids(found) == ["b0.png", "c0.png"]


def test_a_query_before_the_build_fails_at_once_with_the_command(
    tmp_path: Path, data: Path
) -> None:
    index = cases_in(tmp_path, data)
    pixels = read_pixels(data / "nih/images/a0.png")
    with pytest.raises(CasesUnavailableError, match=r"is not built: run `radpilot kb build-cases"):
        index.search(pixels, k=2)
    assert index.status().indexed == 0  # nothing was built behind the user's back


def test_an_interrupted_build_is_not_searched_and_resumes(tmp_path: Path, data: Path) -> None:
    from radpilot.data.devdata import read_nih

    index = cases_in(tmp_path, data)
    index.build(records=read_nih(data)[:1])
    records = read_nih(data)
    # What a build stopped after its first batch leaves behind: more images, no completion.
    index._collection.add(ids=[records[1].image], embeddings=[[1.0, 0.0]],
                          metadatas=[{"patient": A, "labels": "x"}])  # fmt: skip
    pixels = read_pixels(data / "nih/images/a0.png")
    with pytest.raises(CasesUnavailableError, match=r"unfinished \(2 images"):
        index.search(pixels, k=1)
    assert index.build() == 2  # b0 and c0: a0 and a1 are kept
    assert ids(index.search(pixels, k=1)) == ["b0.png"]


def test_a_server_process_sees_a_build_made_by_another(tmp_path: Path, data: Path) -> None:
    """The API opens the index before `kb build-cases` runs in another process; the next
    query must see the finished build (Chroma objects keep the metadata they were opened with).
    """
    serving, building = cases_in(tmp_path, data), cases_in(tmp_path, data)
    building.build()
    assert serving.status().complete


def test_the_index_from_before_the_split_is_removed(tmp_path: Path, data: Path) -> None:
    client = chroma_client(tmp_path / "state")
    client.get_or_create_collection("nih_images_abababababab", embedding_function=None)
    messages: list[str] = []
    cases_in(tmp_path, data).build(progress=messages.append)
    assert [c.name for c in client.list_collections()] == [IMAGES_COLLECTION_PREFIX + "ab" * 6]
    assert "removed the old image index nih_images_abababababab" in messages[0]
    assert messages[1] == "4 images of 3 training patients (0 already indexed)"
    assert messages[-1] == "embedded 4/4 images (100%)"


def test_no_data_names_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(CasesUnavailableError, match="no folder was given"):
        cases_in(tmp_path, None).build()
    with pytest.raises(CasesUnavailableError, match=f"{tmp_path} has none"):
        cases_in(tmp_path, tmp_path).build()


def hit(image: str, patient: str, similarity: float) -> ImageHit:
    return ImageHit(image=image, patient=patient, labels=["x"], similarity=similarity)


def test_shown_hits_leave_out_the_asking_patient_and_other_splits() -> None:
    hits = [hit("copy", A, 1.0), hit("a-other", A, 0.97), hit("test", TEST, 0.96),
            hit("val", VAL, 0.95), hit("b", B, 0.9), hit("c", C, 0.8)]  # fmt: skip
    assert [h.image for h in shown_hits(hits, None)] == ["b", "c"]
    assert [h.image for h in shown_hits(hits[1:], B)] == ["a-other", "c"]
    assert [h.image for h in shown_hits(hits[1:], None)] == ["a-other", "b", "c"]


def test_progress_says_how_far_and_how_long() -> None:
    messages: list[str] = []
    batches = list(in_batches(list(range(5)), 2, "things", messages.append))
    assert batches == [[0, 1], [2, 3], [4]]
    assert messages[0].startswith("embedded 2/5 things (40%), about ")
    assert messages[-1] == "embedded 5/5 things (100%)"


def test_build_cases_refuses_a_wrong_data_folder_before_any_work(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "radpilot.app.cli", "kb", "build-cases", "--data", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "radpilot: error:" in result.stderr and f"{tmp_path} has none" in result.stderr
    assert "reports:" not in result.stderr  # nothing was embedded first
    assert result.stdout == ""


def test_the_tool_keeps_report_cases_when_the_image_index_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Report similarity works without the image index: a text and a study give the reports,
    with the missing image index as a limitation; a study alone fails with the reason."""
    from radpilot.knowledge import cases as cases_module
    from radpilot.knowledge.tools import SimilarCasesInput, SimilarCasesTool
    from radpilot.settings import Settings
    from radpilot.tools.base import ToolContext
    from tests.factories import chest_like, png_bytes

    report = ReferenceCase(source="openi_report", case_id="CXR1", similarity=0.8,
                           labels=["Pleural Effusion"], text="effusion", licence="CC")  # fmt: skip
    reports = SimpleNamespace(search=lambda text, k: [report])
    monkeypatch.setattr(cases_module, "shared_report_cases", lambda *a, **kw: reports)
    context = ToolContext.create(Settings(state_dir=tmp_path), root=tmp_path)
    monkeypatch.setattr(context.models, "findings_model", GreyModel)
    study = context.studies.ingest(png_bytes(chest_like()), "cxr.png")
    tool = SimilarCasesTool()

    both = tool.run(SimilarCasesInput(study_id=study.id, text="effusion"), context)
    assert both.cases == [report] and both.models == []
    assert both.limitations[0].startswith("No similar images: similar images need the image")
    assert "radpilot kb build-cases" in both.limitations[0]
    with pytest.raises(CasesUnavailableError, match="not built"):
        tool.run(SimilarCasesInput(study_id=study.id), context)
