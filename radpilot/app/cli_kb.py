"""`radpilot kb ...`: build, search, evaluate and export the guideline knowledge base."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def add_kb_commands(commands: Any) -> None:
    kb = commands.add_parser("kb", help="guideline knowledge base: build, search, evaluate")
    actions = kb.add_subparsers(dest="kb_command", required=True, metavar="ACTION")

    build = actions.add_parser(
        "build", help="index the guideline notes (incremental: only changed notes re-embedded)"
    )
    build.add_argument(
        "--cases", action="store_true",
        help="also do what build-cases does (with RADPILOT_DATA for the images)",
    )  # fmt: skip
    build.set_defaults(handler=_build)

    cases = actions.add_parser(
        "build-cases",
        help="index the similar cases once: the OpenI reports, and the development images of "
        "the training patients (minutes; resumable, kept in the knowledge store)",
    )
    cases.add_argument("--data", type=Path, help="development data folder (default: RADPILOT_DATA)")
    cases.add_argument("--reports-only", action="store_true", help="skip the image index")
    cases.set_defaults(handler=_build_cases)

    search = actions.add_parser("search", help="hybrid search of the notes, with citations")
    search.add_argument("query")
    search.add_argument("-k", type=int, default=5)
    search.add_argument("--finding", help="only notes about this NIH finding")
    search.add_argument("--body", help="only this issuing body")
    search.add_argument("--year-from", type=int)
    search.add_argument("--mode", choices=["hybrid", "dense", "lexical"], default="hybrid")
    search.add_argument("--json", action="store_true")
    search.set_defaults(handler=_search)

    evaluate = actions.add_parser(
        "evaluate", help="recall@1/@5, MRR and latency on the retrieval question set"
    )
    evaluate.add_argument("--questions", type=Path, help="folder of question YAML files")
    evaluate.add_argument("--misses", action="store_true", help="list the missed questions")
    evaluate.set_defaults(handler=_evaluate)

    graph = actions.add_parser("graph", help="the knowledge graph as JSON, or one finding's")
    graph.add_argument("--finding", help="one finding's neighbourhood")
    graph.add_argument("--png", type=Path, help="with --finding: draw it into this PNG file")
    graph.set_defaults(handler=_graph)


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _index() -> Any:
    from radpilot.knowledge.index import shared_index
    from radpilot.settings import Settings

    settings = Settings()
    return shared_index(
        settings.state_dir,
        settings.weights_dir,
        settings.knowledge_dir,
        chroma_url=settings.chroma_url,
    )


def _build(args: argparse.Namespace) -> int:
    summary: dict[str, Any] = {"notes": _index().build(progress=_progress).model_dump()}
    if args.cases:
        summary |= _cases(data=None, images=True)
    print(json.dumps(summary, indent=2))
    return 0


def _build_cases(args: argparse.Namespace) -> int:
    print(json.dumps(_cases(args.data, images=not args.reports_only), indent=2))
    return 0


def _cases(data: Path | None, *, images: bool) -> dict[str, Any]:
    """Build the report index and, with development data, the image index; their summary."""
    from radpilot.knowledge.cases import (
        development_data,
        shared_image_cases,
        shared_report_cases,
    )
    from radpilot.settings import Settings

    settings = Settings()
    data = data or settings.data
    if images and data is not None:
        data = development_data(data)  # a wrong --data fails now, not after the reports
    reports = shared_report_cases(
        settings.state_dir, settings.weights_dir, chroma_url=settings.chroma_url
    )
    _progress("reports: indexing the OpenI reports")
    summary: dict[str, Any] = {"reports": {"added": reports.build(_progress)}}
    if not images:
        return summary
    if data is None:
        _progress("images: skipped (no development data: pass --data DIR or set RADPILOT_DATA)")
        return summary
    from radpilot.tools.models.hub import ModelHub
    from radpilot.tools.models.store import ModelStore

    model = ModelHub(ModelStore(settings.weights_dir), settings.device).findings_model()
    index = shared_image_cases(settings.state_dir, data, model, chroma_url=settings.chroma_url)
    _progress(f"images: indexing with {model.identity.name} into {index.status().collection}")
    added = index.build(_progress)
    summary["images"] = {"added": added, **index.status().model_dump()}
    return summary


def _search(args: argparse.Namespace) -> int:
    from radpilot.knowledge.graph import canonical_finding
    from radpilot.knowledge.index import Filters

    filters = Filters(
        finding=canonical_finding(args.finding) if args.finding else None,
        body=args.body, year_from=args.year_from,
    )  # fmt: skip
    result = _index().search(args.query, k=args.k, filters=filters, mode=args.mode)
    if args.json:
        print(result.model_dump_json(indent=2))
        return 0
    if result.weak:
        print("(weak: no note matches this query well)")
    for rank, passage in enumerate(result.passages, start=1):
        cite = passage.citation
        print(f"{rank}. [{passage.note_id}] {passage.title}")
        print(f"   {cite.issuing_body}, {cite.document} ({cite.year}), {cite.section}; {cite.url}")
        print(f"   {passage.text}\n")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from radpilot.evals import retrieval_questions
    from radpilot.knowledge.evaluation import evaluate_retrieval, load_questions, question_files

    index = _index()
    folder = args.questions or retrieval_questions()
    questions = load_questions(question_files(folder), set(index.notes))
    result = evaluate_retrieval(index, questions)
    exclude = None if args.misses else {"modes": {"__all__": {"misses_at_5"}}}
    print(result.model_dump_json(indent=2, exclude=exclude))
    return 0


def _graph(args: argparse.Namespace) -> int:
    from radpilot.core.errors import RadpilotError
    from radpilot.knowledge.graph import packaged_graph, render_neighbourhood

    graph = packaged_graph()
    if not args.finding:
        if args.png:
            raise RadpilotError("--png draws one finding's neighbourhood: add --finding")
        print(json.dumps(graph.to_json(), indent=2))
        return 0
    view = graph.neighbourhood(args.finding)
    if args.png:
        args.png.write_bytes(render_neighbourhood(view))
        _progress(f"picture written to {args.png}")
    print(view.model_dump_json(indent=2))
    return 0
