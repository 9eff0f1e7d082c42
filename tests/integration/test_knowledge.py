"""Guideline retrieval on real Chroma (persistent), real MiniLM embeddings and real BM25;
similar cases on the real OpenI reports and development images."""

from __future__ import annotations

import tarfile
import time
from collections import Counter
from pathlib import Path

import pytest

from radpilot.assembly import build_registry
from radpilot.core.contracts import Artefact
from radpilot.core.errors import RadpilotError, ToolArgumentError
from radpilot.evals import retrieval_questions
from radpilot.knowledge.cases import ImageCases, ReportCases, read_reports, reports_archive
from radpilot.knowledge.evaluation import evaluate_retrieval, load_questions, question_files
from radpilot.knowledge.index import Filters, GuidelineIndex, shared_index
from radpilot.knowledge.notes import Note, packaged_notes
from radpilot.settings import Settings
from radpilot.tools.base import ToolContext

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """One state dir for the module: the MiniLM weights are extracted and notes embedded once."""
    return Settings(state_dir=tmp_path_factory.mktemp("knowledge-state"))


def subset() -> list[Note]:
    wanted = ("ptx-", "eff-", "tube-")
    return [n for n in packaged_notes() if n.id.startswith(wanted)]


def test_rebuild_after_editing_one_note_re_embeds_only_that_note(
    settings: Settings, tmp_path: Path
) -> None:
    notes = subset()
    index = GuidelineIndex(tmp_path, settings.weights_dir, notes)
    first = index.build()
    assert sorted(first.added) == sorted(n.id for n in notes) and first.unchanged == 0

    edited = notes[0].model_copy(update={"text": notes[0].text + " An added sentence."})
    reopened = GuidelineIndex(tmp_path, settings.weights_dir, [edited, *notes[1:-1]])
    second = reopened.build()
    assert second.updated == [edited.id]
    assert second.removed == [notes[-1].id]
    assert second.added == [] and second.unchanged == len(notes) - 2
    assert reopened.build().unchanged == len(notes) - 1  # idempotent


def test_paraphrases_find_their_note_with_its_citation(settings: Settings, tmp_path: Path) -> None:
    index = GuidelineIndex(tmp_path, settings.weights_dir, subset())
    result = index.search("where should the tip of a breathing tube sit?", k=3)
    assert not result.weak
    assert result.passages[0].note_id.startswith("tube-ett")
    top = result.passages[0]
    assert top.citation.issuing_body and top.citation.year and top.citation.url
    assert top.similarity is not None and top.similarity > 0.3


def test_filters_restrict_dense_and_lexical_results(settings: Settings, tmp_path: Path) -> None:
    index = GuidelineIndex(tmp_path, settings.weights_dir, subset())
    result = index.search("chest drain", k=10, filters=Filters(finding="Pneumothorax"))
    assert result.passages and all("Pneumothorax" in p.findings for p in result.passages)
    later = index.search("effusion", k=10, filters=Filters(year_from=2023))
    assert all(index.notes[p.note_id].source.year >= 2023 for p in later.passages)
    assert index.search("effusion", filters=Filters(year_from=2099)).passages == []


@pytest.mark.parametrize(
    "query", ["qwpo zzkx blorf vrrm", "胸腔积液怎么处理", "recipe for a chocolate cake"]
)
def test_gibberish_or_foreign_queries_come_back_weak_not_as_errors(
    settings: Settings, tmp_path: Path, query: str
) -> None:
    result = GuidelineIndex(tmp_path, settings.weights_dir, subset()).search(query)
    assert result.weak and len(result.passages) > 0


def test_empty_query_is_a_clear_error(settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(RadpilotError, match="empty"):
        GuidelineIndex(tmp_path, settings.weights_dir, subset()).search("   ")


def test_collection_reopens_with_the_registered_embedding_function(
    settings: Settings, tmp_path: Path
) -> None:
    import chromadb

    GuidelineIndex(tmp_path, settings.weights_dir, subset()).build()
    client = chromadb.PersistentClient(
        path=str(tmp_path / "knowledge" / "chroma"),
        settings=chromadb.Settings(anonymized_telemetry=False),
    )
    collection = client.get_collection("guideline_notes")  # no embedding function given
    assert type(collection.configuration["embedding_function"]).__name__ == (
        "MiniLMEmbeddingFunction"
    )
    found = collection.query(query_texts=["collapsed lung on a supine film"], n_results=1)
    assert found["ids"][0][0].startswith("ptx-")


def test_hybrid_retrieval_meets_its_recall_target_on_the_question_set(settings: Settings) -> None:
    index = shared_index(settings.state_dir, settings.weights_dir)
    questions = load_questions(question_files(retrieval_questions()), set(index.notes))
    result = evaluate_retrieval(index, questions)
    scores = {m.mode: m for m in result.modes}
    assert scores["hybrid"].recall_at_5 >= 0.95
    assert scores["hybrid"].mrr >= scores["dense"].mrr


def test_search_and_graph_tools_return_cited_evidence(settings: Settings, tmp_path: Path) -> None:
    context = ToolContext.create(settings, root=tmp_path)
    registry = build_registry(Settings())
    search = registry.run(
        "search_guidelines", {"query": "repeat film after pneumonia", "finding": "pneumonia"},
        context,
    )  # fmt: skip
    assert search.ok and search.evidence_kind == "guideline" and search.output is not None
    assert search.output["passages"][0]["citation"]["url"].startswith("https://")
    graph = registry.run("knowledge_graph", {"finding": "Effusion"}, context)
    assert graph.ok and graph.output is not None
    assert graph.output["differentials"] and graph.output["citations"]
    picture = context.artefacts.path(Artefact.model_validate(graph.output["artefacts"][0]))
    assert picture.read_bytes().startswith(b"\x89PNG")
    with pytest.raises(ToolArgumentError, match="unknown finding"):
        registry.run("knowledge_graph", {"finding": "broken heart"}, context)
    with pytest.raises(ToolArgumentError, match="study_id .* or a text"):
        registry.run("similar_cases", {"k": 2}, context)


@pytest.fixture(scope="module")
def small_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 60 real OpenI reports, in the archive's own format (a full build embeds
    3,927 reports: minutes on two cores)."""
    target = tmp_path_factory.mktemp("openi") / "reports.tgz"
    with tarfile.open(reports_archive()) as source, tarfile.open(target, "w:gz") as out:
        members = [m for m in source if m.name.endswith(".xml")][:60]
        for member in members:
            out.addfile(member, source.extractfile(member))
    return target


def test_report_cases_are_real_openi_reports_with_their_licence(
    settings: Settings, tmp_path: Path, small_archive: Path
) -> None:
    reports = list(read_reports(small_archive))
    cases = ReportCases(tmp_path, settings.weights_dir, archive=small_archive)
    assert cases.build() == len(reports) and cases.build() == 0
    effusion = next(r for r in reports if any("Pleural Effusion" in x for x in r.labels))
    [hit] = cases.search(effusion.text, k=1)
    assert hit.case_id == effusion.report_id and hit.similarity > 0.99
    assert any("Pleural Effusion" in label for label in hit.labels)
    assert hit.source == "openi_report" and "CC BY-NC-ND" in hit.licence
    assert hit.text and hit.labels


def test_image_cases_return_development_images_with_labels(
    settings: Settings, tmp_path: Path, data_dir: Path
) -> None:
    from radpilot.data.devdata import read_nih, records_in

    context = ToolContext.create(Settings(state_dir=tmp_path, data=data_dir), root=tmp_path)
    model = context.models.findings_model()
    records = read_nih(data_dir)[:40]
    images = ImageCases(tmp_path, data_dir, model)
    training = records_in(records, "train")
    assert images.build(records=records) == len(training) < len(records)
    study = context.studies.ingest_file(data_dir / training[0].image)
    arguments = {"study_id": study.id, "k": 3}
    result = build_registry(Settings()).run("similar_cases", arguments, context)
    assert result.ok and result.output is not None, result.error
    cases = result.output["cases"]
    assert len(cases) == 3 and all(c["source"] == "nih_image" for c in cases)
    assert training[0].image not in {c["case_id"] for c in cases}  # the study itself is left out
    assert all(c["labels"] and 0 < c["similarity"] < 1 for c in cases)
    assert "not evidence about this patient" in result.output["note"]


def test_similar_images_never_show_test_patients_or_the_asking_patient(
    tmp_path: Path, data_dir: Path
) -> None:
    """Built from records of every split, queried with an image of a training patient who has
    other images in the index and with a test patient's image: every case shown is another
    training patient's."""
    from radpilot.data.devdata import read_nih, split_of

    records = read_nih(data_dir)
    patient_of = {r.image: r.patient_id for r in records}
    counts = Counter(r.patient_id for r in records)
    repeated = [p for p in counts if counts[p] >= 2 and split_of(p) == "train"][:5]
    others = [r for r in records if split_of(r.patient_id) != "train"][:12]
    chosen = [r for r in records if r.patient_id in repeated] + others
    context = ToolContext.create(Settings(state_dir=tmp_path, data=data_dir), root=tmp_path)
    images = ImageCases(tmp_path, data_dir, context.models.findings_model())
    indexed = images.build(records=chosen)
    assert indexed == sum(counts[p] for p in repeated)  # the test and validation images: none
    registry = build_registry(Settings())
    asking = next(r for r in chosen if r.patient_id == repeated[0])
    queries = {asking.patient_id: asking.image, others[0].patient_id: others[0].image}
    for patient, image in queries.items():
        study = context.studies.ingest_file(data_dir / image)
        result = registry.run("similar_cases", {"study_id": study.id, "k": 10}, context)
        assert result.ok and result.output is not None, result.error
        shown = [patient_of[c["case_id"]] for c in result.output["cases"]]
        assert patient not in shown and all(split_of(p) == "train" for p in shown)
        # Everything else comes back (the index is small), so the filter is what kept them out.
        assert len(shown) == min(10, indexed - counts[patient] * (patient in repeated))


def test_similar_images_before_the_build_say_how_to_build(tmp_path: Path, data_dir: Path) -> None:
    context = ToolContext.create(Settings(state_dir=tmp_path, data=data_dir), root=tmp_path)
    study = context.studies.ingest_file(data_dir / "nih/images/00000032_037.png")
    started = time.perf_counter()
    result = build_registry(Settings()).run("similar_cases", {"study_id": study.id}, context)
    assert time.perf_counter() - started < 30  # no build inside the query (minutes)
    assert not result.ok and result.error is not None
    assert result.error.code == "cases_unavailable"
    assert "radpilot kb build-cases --data DIR" in result.error.message
