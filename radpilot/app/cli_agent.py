"""`radpilot ask` and `radpilot report`: one-shot conversations from the shell."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def add_agent_commands(commands: Any) -> None:
    ask = commands.add_parser(
        "ask",
        help="ask a question about a chest radiograph",
        description="radpilot ask [IMAGE] QUESTION. IMAGE becomes the session's current study; "
        "with --session, IMAGE may be omitted to continue the conversation.",
    )
    ask.add_argument("words", nargs="+", metavar="[IMAGE] QUESTION")
    ask.add_argument("--prior", type=Path, help="an earlier study of the same patient")
    ask.add_argument("--prior-date", help="the prior's date (YYYY-MM-DD) if its file has none")
    ask.add_argument("--session", help="continue this session (printed by an earlier ask)")
    ask.add_argument("--json", action="store_true", help="print the Answer with its evidence")
    ask.set_defaults(handler=_ask)

    report = commands.add_parser("report", help="a structured report of a radiograph")
    report.add_argument("image", type=Path)
    report.add_argument("--prior", type=Path)
    report.add_argument("--format", choices=["md", "json", "fhir"], default="md")
    report.set_defaults(handler=_report)


def _agent() -> Any:
    from radpilot.assembly import build_agent
    from radpilot.settings import Settings

    return build_agent(Settings())


def _read(path: Path) -> bytes:
    from radpilot.core.errors import IngestError

    try:
        return path.read_bytes()
    except OSError as error:
        raise IngestError(f"cannot read {path}: {error.strerror}", code="unreadable") from None


def _start(agent: Any, image: Path | None, prior: Path | None, session: str | None,
           prior_date: str | None = None) -> str:  # fmt: skip
    from datetime import date

    session_id = session or agent.new_session()
    if prior is not None:
        acquired = date.fromisoformat(prior_date) if prior_date else None
        agent.add_study(session_id, _read(prior), prior.name, role="prior", acquired=acquired)
    if image is not None:
        agent.add_study(session_id, _read(image), image.name, role="current")
    return session_id


def _ask(args: argparse.Namespace) -> int:
    from radpilot.core.errors import RadpilotError

    if len(args.words) > 2:
        raise RadpilotError('quote the question: radpilot ask IMAGE "Is there an effusion?"')
    image = Path(args.words[0]) if len(args.words) == 2 else None
    agent = _agent()
    session_id = _start(agent, image, args.prior, args.session, args.prior_date)
    answer = agent.ask(session_id, args.words[-1])
    print(f"session {session_id} (continue with --session {session_id})", file=sys.stderr)
    if args.json:
        print(answer.model_dump_json(indent=2))
    else:
        print(render_text(answer, agent))
    return 0


def render_text(answer: Any, agent: Any) -> str:
    if answer.clarification:
        return answer.clarification
    lines = [f"- {c.text} [{', '.join(c.evidence) or 'statement'}]" for c in answer.claims]
    for evidence in answer.evidence:
        for artefact in evidence.artefacts:
            lines.append(f"  overlay ({evidence.id}): {agent.tools.artefacts.path(artefact)}")
    lines += ["", "Limitations:", *[f"- {item}" for item in answer.limitations]]
    return "\n".join(lines)


def _report(args: argparse.Namespace) -> int:
    from radpilot.agent.report import render_markdown, to_fhir

    agent = _agent()
    session_id = _start(agent, args.image, args.prior, None)
    answer = agent.ask(session_id, "Write a report")
    if args.format == "md":
        print(render_markdown(answer), end="")
    elif args.format == "json":
        print(answer.model_dump_json(indent=2))
    else:
        print(json.dumps(to_fhir(answer, agent.state(session_id).studies), indent=2))
    return 0
