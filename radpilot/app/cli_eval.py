"""`radpilot eval SCENARIOS_DIR --data DIR`: scripted multi-turn evaluation of the agent."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from radpilot.app.cli_options import add_model_endpoint_options, endpoint_overrides


def add_eval_commands(commands: Any) -> None:
    evaluate = commands.add_parser(
        "eval",
        help="run scripted conversations (YAML scenarios) and grade every turn",
        description="Each scenario runs in a fresh session through the same agent the API "
        "uses; prints a JSON summary. See radpilot/evals/README.md for the format.",
    )
    evaluate.add_argument("scenarios", type=Path, metavar="SCENARIOS_DIR")
    evaluate.add_argument("--data", type=Path, required=True, help="images are relative to this")
    evaluate.add_argument(
        "--planner", choices=["embedded", "llm"], default="embedded",
        help="embedded (offline default) or llm (needs --llm-url/--llm-model or RADPILOT_LLM_*)",
    )  # fmt: skip
    add_model_endpoint_options(evaluate)
    evaluate.add_argument("--jobs", type=int, default=1,
                          help="scenarios run at once (each in its own session)")  # fmt: skip
    evaluate.add_argument(
        "--out", type=Path,
        help="write records.jsonl, summary.json and report.md with plots here",
    )  # fmt: skip
    evaluate.set_defaults(handler=_eval)

    generate = commands.add_parser(
        "eval-generate",
        help="generate the development scenario set from the data's labels and pairs",
    )
    generate.add_argument("--data", type=Path, required=True)
    generate.add_argument("--out", type=Path, required=True, help="folder for the YAML files")
    generate.add_argument("--seed", type=int, default=0)
    generate.set_defaults(handler=_generate)

    attacks = commands.add_parser(
        "eval-generate-attacks",
        help="generate the prompt-injection attack set (user text, DICOM tags, poisoned notes)",
        description="Writes OUT/images, OUT/knowledge and OUT/scenarios; run it with "
        "RADPILOT_KNOWLEDGE_DIR=OUT/knowledge radpilot eval OUT/scenarios --data OUT",
    )
    attacks.add_argument("--data", type=Path, required=True)
    attacks.add_argument("--out", type=Path, required=True)
    attacks.add_argument("--seed", type=int, default=0)
    attacks.set_defaults(handler=_generate_attacks)


def _generate(args: argparse.Namespace) -> int:
    from radpilot.evals.generate import generate, write_scenarios

    write_scenarios(generate(args.data, args.seed), args.out, progress=_progress)
    return 0


def _generate_attacks(args: argparse.Namespace) -> int:
    from radpilot.evals.attacks import write_attack_set

    count = write_attack_set(args.data, args.out, args.seed)
    _progress(f"{count} attacks written to {args.out}; run: RADPILOT_KNOWLEDGE_DIR="
              f"{args.out / 'knowledge'} radpilot eval {args.out / 'scenarios'} --data {args.out}")
    return 0


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _eval(args: argparse.Namespace) -> int:
    from radpilot.assembly import build_agent
    from radpilot.core.errors import RadpilotError
    from radpilot.evals.runner import run_all
    from radpilot.evals.scenario import load_scenarios
    from radpilot.settings import Settings

    if not args.data.is_dir():
        raise RadpilotError(f"--data {args.data} is not a folder")
    scenarios = load_scenarios(args.scenarios)
    if args.jobs < 1:
        raise RadpilotError("--jobs must be at least 1")
    settings = Settings(**endpoint_overrides(args))
    if args.planner == "llm" and settings.llm_url is None:
        raise RadpilotError("--planner llm needs an endpoint: --llm-url URL --llm-model NAME "
                            "(or RADPILOT_LLM_URL and RADPILOT_LLM_MODEL)")  # fmt: skip
    llm_summary = None
    if args.planner == "embedded" and settings.llm_url is not None and args.out:
        _progress("an LLM endpoint is configured: running the LLM planner as a baseline first")
        llm_summary, _ = run_all(build_agent(settings), scenarios, args.data, progress=_progress,
                                 jobs=args.jobs)  # fmt: skip
    if args.planner == "embedded":
        settings = settings.model_copy(update={"llm_url": None})
    summary, records = run_all(build_agent(settings), scenarios, args.data, progress=_progress,
                               jobs=args.jobs)  # fmt: skip
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        lines = "".join(record.model_dump_json() + "\n" for record in records)
        (args.out / "records.jsonl").write_text(lines)
        (args.out / "summary.json").write_text(summary.model_dump_json(indent=2) + "\n")
        from radpilot.evals.baselines import baselines
        from radpilot.evals.report import write_report

        try:
            found = baselines(summary, records, args.data, llm=llm_summary)
            (args.out / "baselines.json").write_text(found.model_dump_json(indent=2) + "\n")
        except RadpilotError as error:  # e.g. an attack set: no NIH labels under --data
            found = None
            _progress(f"no baselines: {error.message}")
        _progress(f"report written to {write_report(summary, records, args.out, found)}")
    print(summary.model_dump_json(indent=2))
    return 0 if summary.pass_rate == 1.0 else 3
