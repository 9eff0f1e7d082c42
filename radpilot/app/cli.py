"""The `radpilot` command line.

Start-up imports nothing heavy, so `radpilot --help` answers at once. Problems the user can
fix exit with code 2 and one clear line on stderr; a bug exits with 1, without a traceback
unless `--debug` is given.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from radpilot.core.notice import DECISION_SUPPORT

EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="radpilot",
        description="Evidence-grounded assistant for chest radiographs. " + DECISION_SUPPORT,
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    commands.add_parser("version", help="print the version").set_defaults(handler=_version)

    tools = commands.add_parser("tools", help="list or run the expert tools").add_subparsers(
        dest="tools_command", required=True, metavar="ACTION"
    )
    listing = tools.add_parser("list", help="name, description and input schema of each tool")
    listing.add_argument("--json", action="store_true", help="full specs as JSON")
    listing.set_defaults(handler=_tools_list)
    run = tools.add_parser("run", help="run one tool on one image and print its result as JSON")
    run.add_argument("name", help="tool name (see `radpilot tools list`)")
    run.add_argument("--image", type=Path, help="PNG, JPEG or DICOM file (de-identified on ingest)")
    run.add_argument("--args", default="{}", help="tool arguments as a JSON object")
    run.add_argument(
        "--save-artefacts",
        type=Path,
        metavar="DIR",
        help="copy the tool's artefacts (overlay PNGs) into DIR",
    )
    run.set_defaults(handler=_tools_run)

    deid = commands.add_parser(
        "deid",
        help="de-identify a DICOM (PS3.15 basic profile) or strip a PNG/JPEG's metadata",
        description="De-identify IN into OUT. IN may be a file or a folder (mirrored into OUT). "
        "DICOM files stay DICOM; PNG and JPEG files are re-encoded as PNG without metadata. "
        "Patient keys and date shifts are consistent across runs on this site (the key lives "
        "in RADPILOT_STATE_DIR).",
    )
    deid.add_argument("input", type=Path, metavar="IN")
    deid.add_argument("output", type=Path, metavar="OUT")
    deid.set_defaults(handler=_deid)

    from radpilot.app.cli_agent import add_agent_commands
    from radpilot.app.cli_eval import add_eval_commands
    from radpilot.app.cli_kb import add_kb_commands
    from radpilot.app.cli_models import add_models_commands
    from radpilot.app.cli_pacs import add_pacs_commands
    from radpilot.app.cli_server import add_server_commands
    from radpilot.app.cli_triage import add_triage_commands

    add_agent_commands(commands)
    add_eval_commands(commands)
    add_kb_commands(commands)
    add_models_commands(commands)
    add_pacs_commands(commands)
    add_triage_commands(commands)
    add_server_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.debug:
        # pydicom warns about every odd header value, in lines that look like a traceback;
        # radpilot reports what matters as its own error or QC note, so they are only noise.
        warnings.filterwarnings("ignore", module="pydicom")
    from radpilot.core.errors import RadpilotError

    try:
        result: int = args.handler(args)
        return result
    except RadpilotError as error:
        print(f"radpilot: error: {error.message}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("radpilot: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        if args.debug:
            raise
        print(
            f"radpilot: internal error ({type(error).__name__}); rerun with --debug for details",
            file=sys.stderr,
        )
        return EXIT_INTERNAL_ERROR


def _version(args: argparse.Namespace) -> int:
    from radpilot import __version__

    print(f"radpilot {__version__}")
    return 0


def _tools_list(args: argparse.Namespace) -> int:
    from radpilot.assembly import build_registry
    from radpilot.settings import Settings

    specs = build_registry(Settings()).specs()  # what the agent is offered
    if args.json:
        print(json.dumps([spec.model_dump(mode="json") for spec in specs], indent=2))
        return 0
    for spec in specs:
        print(
            f"{spec.name}\n  {spec.description}\n  input schema: "
            f"{json.dumps(spec.input_schema.get('properties', {}))}\n"
        )
    return 0


def _tools_run(args: argparse.Namespace) -> int:
    import shutil
    import tempfile

    from radpilot.assembly import build_registry
    from radpilot.core.contracts import Artefact
    from radpilot.core.errors import RadpilotError
    from radpilot.settings import Settings
    from radpilot.tools.base import ToolContext

    arguments = _parse_json_object(args.args)
    settings = Settings()
    # Local: the scratch study below lives where a tool service could not read it.
    registry = build_registry(settings, local=True)
    tool = registry.get(args.name)
    with tempfile.TemporaryDirectory(prefix="radpilot-run-") as scratch:
        # A one-off run keeps nothing: studies and artefacts live in a scratch folder.
        ctx = ToolContext.create(settings, root=Path(scratch))
        if args.image is not None:
            if "study_id" not in tool.Input.model_fields:
                raise RadpilotError(f"{args.name} does not take an image")
            arguments.setdefault("study_id", ctx.studies.ingest_file(args.image).id)
        result = registry.run(args.name, arguments, ctx)
        if args.save_artefacts is not None and result.output:
            args.save_artefacts.mkdir(parents=True, exist_ok=True)
            for item in result.output.get("artefacts", []):
                artefact = Artefact.model_validate(item)
                shutil.copyfile(ctx.artefacts.path(artefact), args.save_artefacts / artefact.path)
    print(result.model_dump_json(indent=2))
    if result.ok:
        return 0
    # The JSON above is for scripts; a person needs the one-line reason that every other
    # refused input gets (e.g. an unknown study id in --args).
    message = result.error.message if result.error else f"{args.name} failed"
    print(f"radpilot: error: {message}", file=sys.stderr)
    internal = result.error is None or result.error.code == "internal_error"
    return EXIT_INTERNAL_ERROR if internal else EXIT_USER_ERROR


def _deid(args: argparse.Namespace) -> int:
    from radpilot.core.errors import IngestError
    from radpilot.settings import Settings
    from radpilot.tools.deid_files import deidentify_path
    from radpilot.tools.dicom import load_or_create_secret

    source: Path = args.input
    if not source.exists():
        raise IngestError(f"{source} does not exist", code="unreadable")
    settings = Settings()
    report = deidentify_path(
        source,
        args.output,
        secret=load_or_create_secret(settings.state_dir),
        max_megapixels=settings.max_image_megapixels,
    )
    for line in report.lines():
        print(line)
    return 0 if not report.failed else EXIT_USER_ERROR


def _parse_json_object(text: str) -> dict[str, Any]:
    from radpilot.core.errors import ToolArgumentError

    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise ToolArgumentError(f"--args is not valid JSON: {error.msg}") from None
    if not isinstance(value, dict):
        raise ToolArgumentError('--args must be a JSON object, e.g. \'{"finding": "Effusion"}\'')
    return value


if __name__ == "__main__":
    sys.exit(main())
