"""`radpilot triage`: a worklist ranked by urgency, over a folder or a PACS query."""

from __future__ import annotations

import argparse
import csv
import io
import sys
from datetime import date
from pathlib import Path
from typing import Any

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".dcm", ".dicom", ""}


def add_triage_commands(commands: Any) -> None:
    triage = commands.add_parser(
        "triage", help="rank studies by urgency (pneumothorax, effusion, other, normal)",
        description="Classify every study of a folder, or of a PACS query (studies by date, "
        "patient or accession), in batches, and rank them: pneumothorax, then effusion, then "
        "other findings, then studies that could not be read, then the rest, each by "
        "probability. Decision support: the ranking orders reading, it rules nothing out.",
    )  # fmt: skip
    source = triage.add_mutually_exclusive_group(required=True)
    source.add_argument("--folder", type=Path, help="PNG, JPEG or DICOM files")
    source.add_argument("--pacs", action="store_true", help="studies from RADPILOT_DICOMWEB_URL")
    triage.add_argument("--from", dest="date_from", type=date.fromisoformat,
                        help="PACS: first study date (YYYY-MM-DD)")  # fmt: skip
    triage.add_argument("--to", dest="date_to", type=date.fromisoformat,
                        help="PACS: last study date")  # fmt: skip
    triage.add_argument("--patient-id", help="PACS: one patient's studies")
    triage.add_argument("--out", type=Path, help="write the worklist here (.json or .csv)")
    triage.add_argument("--batch-size", type=int, default=4, help="studies per forward pass")
    triage.set_defaults(handler=_triage)


def _triage(args: argparse.Namespace) -> int:
    from radpilot.app.triage import triage
    from radpilot.assembly import build_agent
    from radpilot.core.errors import RadpilotError
    from radpilot.settings import Settings

    if args.out is not None and args.out.suffix not in (".json", ".csv"):
        raise RadpilotError("--out must end in .json or .csv", code="bad_arguments")
    settings = Settings()
    sources = _pacs_sources(args, settings) if args.pacs else _folder_sources(args.folder)
    tools = build_agent(settings).tools

    def progress(done: int) -> None:
        print(f"triage: {done}/{len(sources)} studies", file=sys.stderr)

    worklist = triage(sources, tools, batch_size=args.batch_size, progress=progress)
    text = worklist.model_dump_json(indent=2) if args.out is None or args.out.suffix == ".json" \
        else _csv(worklist)  # fmt: skip
    if args.out is None:
        print(text)
    else:
        args.out.write_text(text)
        print(f"triage: {len(worklist.items)} studies ranked into {args.out}", file=sys.stderr)
    return 0


def _folder_sources(folder: Path) -> list[Any]:
    from radpilot.app.triage import TriageSource
    from radpilot.core.errors import RadpilotError

    if not folder.is_dir():
        raise RadpilotError(f"{folder} is not a folder", code="unreadable")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                   and not p.name.startswith("."))  # fmt: skip
    return [TriageSource(source=p.name, read=p.read_bytes) for p in files]


def _pacs_sources(args: argparse.Namespace, settings: Any) -> list[Any]:
    from radpilot.app.cli_pacs import validated
    from radpilot.app.triage import pacs_sources
    from radpilot.pacs.client import PacsClient, PacsQuery

    query = validated(PacsQuery, patient_id=args.patient_id, date_from=args.date_from,
                      date_to=args.date_to, limit=200)  # fmt: skip
    return pacs_sources(PacsClient.from_settings(settings), query)


def _csv(worklist: Any) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["rank", "source", "study_date", "accession_number", "urgency", "reason"])
    for item in worklist.items:
        writer.writerow([item.rank, item.source, item.study_date or "",
                         item.accession_number or "", item.urgency, item.reason])  # fmt: skip
    return buffer.getvalue()
