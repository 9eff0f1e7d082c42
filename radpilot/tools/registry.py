"""The tool registry: the contract between the planners and the expert tools.

It lists tools, produces their JSON schemas (which become an LLM's tool schemas), validates
arguments into a clear error instead of a traceback, runs and times each call.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from radpilot.core.contracts import ModelCard, ToolError, ToolResult
from radpilot.core.errors import RadpilotError, ToolArgumentError, ToolNotFoundError
from radpilot.tools.base import Tool, ToolContext, ToolInput

log = logging.getLogger(__name__)


class ToolSpec(BaseModel):
    """A tool as a planner (or a user) sees it."""

    name: str
    description: str
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]
    model_cards: list[ModelCard]


def describe_validation_error(error: ValidationError) -> str:
    """One readable line per problem, e.g. ``study_id: Field required``."""
    problems = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "arguments"
        problems.append(f"{where}: {item['msg']}")
    return "; ".join(problems)


class ToolRegistry:
    def __init__(self, tools: Iterable[Tool[Any, Any]] = ()) -> None:
        self._tools: dict[str, Tool[Any, Any]] = {}
        for tool in tools:
            self.register(tool)

    def register(self, tool: Tool[Any, Any]) -> None:
        if tool.name in self._tools:
            raise ValueError(f"a tool named {tool.name!r} is already registered")
        self._tools[tool.name] = tool

    def names(self) -> list[str]:
        return sorted(self._tools)

    def get(self, name: str) -> Tool[Any, Any]:
        try:
            return self._tools[name]
        except KeyError:
            known = ", ".join(self.names()) or "none"
            raise ToolNotFoundError(f"unknown tool {name!r}; known tools: {known}") from None

    def spec(self, name: str) -> ToolSpec:
        tool = self.get(name)
        return ToolSpec(
            name=tool.name,
            description=tool.description,
            input_schema=tool.Input.model_json_schema(),
            output_schema=tool.Output.model_json_schema(),
            model_cards=tool.cards(),
        )

    def specs(self) -> list[ToolSpec]:
        return [self.spec(name) for name in self.names()]

    def validate(self, name: str, arguments: Mapping[str, Any] | ToolInput) -> ToolInput:
        """The tool's Input model for these arguments; an Input already validated (by
        `validate_call`, or by the MCP SDK from the tool's own schema) is not validated again."""
        tool = self.get(name)
        if isinstance(arguments, tool.Input):
            return arguments
        try:
            return tool.Input.model_validate(dict(arguments))
        except ValidationError as error:
            raise ToolArgumentError(
                f"bad arguments for {name}: {describe_validation_error(error)}"
            ) from None

    def validate_call(
        self, name: str, arguments: Mapping[str, Any] | ToolInput, session_studies: set[str]
    ) -> ToolInput:
        """A call's validated Input, refused unless every study it names belongs to the
        session: the one check the agent's executor, the LLM planner and MCP all use (`run`
        takes its result as it is). An optional study id left out (a text-only
        `similar_cases`) names no study."""
        validated = self.validate(name, arguments)
        inputs = validated.model_dump(mode="json")
        foreign = [str(v) for k, v in inputs.items()
                   if k.endswith("_id") and v is not None and v not in session_studies]  # fmt: skip
        if foreign:
            raise RadpilotError(
                f"study id(s) {', '.join(foreign)} are not in this session", code="unknown_study"
            )
        return validated

    def run(
        self, name: str, arguments: Mapping[str, Any] | ToolInput, ctx: ToolContext
    ) -> ToolResult:
        """Validate and run one call.

        An unknown tool or bad arguments raise (the caller asked for something impossible);
        a failure inside the tool becomes a `ToolResult` with `ok=False`, so one broken tool
        never takes a conversation down.
        """
        tool = self.get(name)
        inp = self.validate(name, arguments)
        inputs = inp.model_dump(mode="json")
        started = time.perf_counter()
        try:
            output = tool.run(inp, ctx)
        except RadpilotError as error:
            return ToolResult(
                tool=name,
                ok=False,
                inputs=inputs,
                error=ToolError(code=error.code, message=error.message),
                evidence_kind=tool.evidence_kind,
                elapsed_ms=_elapsed_ms(started),
            )
        except Exception:
            # A bug, not the user's fault: keep the details in the log (no PHI there: tools
            # receive study ids, never identities), give the caller a clean failure.
            log.exception("tool %s failed", name)
            return ToolResult(
                tool=name,
                ok=False,
                inputs=inputs,
                error=ToolError(code="internal_error", message=f"{name} failed unexpectedly"),
                evidence_kind=tool.evidence_kind,
                elapsed_ms=_elapsed_ms(started),
            )
        elapsed = _elapsed_ms(started)
        log.info("tool %s ran in %.1f ms", name, elapsed)
        return ToolResult(
            tool=name,
            ok=True,
            inputs=inputs,
            output=output.model_dump(mode="json"),
            evidence_kind=tool.evidence_kind,
            elapsed_ms=elapsed,
        )


def _elapsed_ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0
