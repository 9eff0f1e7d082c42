"""Command-line options shared by commands that run the agent (`serve`, `eval`)."""

from __future__ import annotations

import argparse
from typing import Any


def add_model_endpoint_options(parser: argparse.ArgumentParser) -> None:
    """`--llm-url/--llm-model` (the LLM planner) and `--vlm-url/--vlm-model` (describe_image);
    each overrides its RADPILOT_ setting."""
    group = parser.add_argument_group("model endpoints (OpenAI-compatible, e.g. vLLM)")
    group.add_argument("--llm-url", help="planner LLM, e.g. http://127.0.0.1:8001/v1")
    group.add_argument("--llm-model", help="the name the LLM server serves")
    group.add_argument("--vlm-url", help="vision-language model for describe_image")
    group.add_argument("--vlm-model", help="the name the VLM server serves")


def endpoint_overrides(args: argparse.Namespace) -> dict[str, Any]:
    names = ("llm_url", "llm_model", "vlm_url", "vlm_model")
    return {name: getattr(args, name) for name in names if getattr(args, name, None)}
