"""Prompt and vocabulary text files (YAML), read by the agent; this package imports nothing."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any


@cache
def load(name: str) -> Any:
    """Parse `radpilot/prompts/<name>.yaml`."""
    import yaml

    return yaml.safe_load(resources.files(__name__).joinpath(f"{name}.yaml").read_text())
