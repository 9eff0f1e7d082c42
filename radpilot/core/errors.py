"""Errors that reach users.

Every error a user can cause (a bad file, a bad argument, an unknown tool) is a
`RadpilotError` with a stable `code` and a message that says what is wrong and what to do.
Interfaces turn these into exit code 2 (CLI) or a 4xx response (API); anything else is a bug
and is reported without a traceback.
"""

from __future__ import annotations


class RadpilotError(Exception):
    """A problem the user can understand and fix."""

    code = "error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return self.message


class IngestError(RadpilotError):
    """A file could not be read as a chest radiograph (corrupt, too large, wrong modality)."""

    code = "ingest_error"


class ToolNotFoundError(RadpilotError):
    code = "unknown_tool"


class ToolArgumentError(RadpilotError):
    code = "bad_arguments"


class StudyNotFoundError(RadpilotError):
    code = "unknown_study"
