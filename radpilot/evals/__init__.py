"""Evaluations: the scenario format and runner, their metrics and report, and the question
set of the retrieval evaluation (`radpilot kb evaluate`)."""

from importlib import resources
from pathlib import Path


def retrieval_questions() -> Path:
    """The folder of the project's retrieval questions (`radpilot/evals/retrieval/*.yaml`)."""
    return Path(str(resources.files(__name__).joinpath("retrieval")))
