"""`radpilot pacs find` and `radpilot pacs pull`: studies from the PACS named by
RADPILOT_DICOMWEB_URL, pulled into a session that `radpilot ask --session` continues."""

from __future__ import annotations

import argparse
import json
from datetime import date
from typing import Any


def add_pacs_commands(commands: Any) -> None:
    pacs = commands.add_parser(
        "pacs", help="search a PACS over DICOMweb and pull studies into a session",
        description="The PACS is RADPILOT_DICOMWEB_URL (with RADPILOT_DICOMWEB_USERNAME and "
        "_PASSWORD, or _TOKEN). Pulled studies are de-identified on ingest like uploads.",
    ).add_subparsers(dest="pacs_command", required=True, metavar="ACTION")  # fmt: skip
    find = pacs.add_parser("find", help="CR/DX studies by patient id or accession number")
    find.add_argument("--patient-id", help="exact patient id")
    find.add_argument("--accession", help="exact accession number")
    find.add_argument("--from", dest="date_from", type=date.fromisoformat, help="YYYY-MM-DD")
    find.add_argument("--to", dest="date_to", type=date.fromisoformat, help="YYYY-MM-DD")
    find.add_argument("--modality", choices=["CR", "DX"])
    find.add_argument("--json", action="store_true", help="print the studies as JSON")
    find.set_defaults(handler=_find)
    pull = pacs.add_parser("pull", help="pull a study (and its prior) into a session")
    pull.add_argument("study_uid", help="the StudyInstanceUID (from `radpilot pacs find`)")
    pull.add_argument("--prior", default="auto",
                      help="'auto' (most recent earlier CR/DX study, the default), 'none', or "
                      "the prior's StudyInstanceUID")  # fmt: skip
    pull.add_argument("--session", help="add to this session (default: a new one)")
    pull.set_defaults(handler=_pull)
    push = pacs.add_parser(
        "push", help="write a session's latest answer back to the PACS (DICOM SR + overlays)",
        description="Needs RADPILOT_PACS_WRITE_BACK=true, and a current study pulled with it on.",
    )  # fmt: skip
    push.add_argument("--session", required=True, help="the session (from `radpilot pacs pull`)")
    push.set_defaults(handler=_push)


def _client() -> Any:
    from radpilot.pacs.client import PacsClient
    from radpilot.settings import Settings

    return PacsClient.from_settings(Settings())


def validated(model: Any, **fields: Any) -> Any:
    from pydantic import ValidationError

    from radpilot.core.errors import RadpilotError
    from radpilot.tools.registry import describe_validation_error

    try:
        return model(**fields)
    except ValidationError as error:
        raise RadpilotError(describe_validation_error(error), code="bad_arguments") from None


def _find(args: argparse.Namespace) -> int:
    from radpilot.pacs.client import PacsQuery

    query = validated(PacsQuery, patient_id=args.patient_id, accession_number=args.accession,
                       date_from=args.date_from, date_to=args.date_to,
                       modality=args.modality)  # fmt: skip
    studies = _client().find_studies(query)
    if args.json:
        print(json.dumps([s.model_dump(mode="json") for s in studies], indent=2))
        return 0
    if not studies:
        print("no CR/DX study matches")
    for study in studies:
        print(f"{study.study_date or 'undated'}  {'/'.join(study.modalities) or '?'}  "
              f"{study.accession_number or '-'}  {study.study_uid}")  # fmt: skip
    return 0


def _pull(args: argparse.Namespace) -> int:
    import sys

    from radpilot.app.pacs import links_for, session_ingest
    from radpilot.assembly import build_agent
    from radpilot.pacs.pull import PullRequest, pull
    from radpilot.settings import Settings

    request = validated(PullRequest, study_uid=args.study_uid, prior=args.prior)
    client = _client()
    settings = Settings()
    agent = build_agent(settings)
    session_id = args.session or agent.new_session()
    agent.state(session_id)  # an unknown --session fails before the PACS is asked
    result = pull(client, request, session_ingest(agent, session_id, links_for(settings)))
    print(result.model_dump_json(indent=2))
    print(f"session {session_id}: ask with `radpilot ask --session {session_id} \"...\"`",
          file=sys.stderr)  # fmt: skip
    return 0


def _push(args: argparse.Namespace) -> int:
    from radpilot.app.pacs import links_for, write_back
    from radpilot.assembly import build_agent
    from radpilot.settings import Settings

    settings = Settings()
    written = write_back(build_agent(settings), _client(), links_for(settings), args.session)
    print(written.model_dump_json(indent=2))
    return 0
