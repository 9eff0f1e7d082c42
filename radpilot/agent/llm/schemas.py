"""Strict tool schemas for an LLM, generated from the registry's pydantic Inputs.

`tool_choice="required"` only constrains the call's wrapper; the arguments are constrained by
the schema only when it is strict and tight. So each schema is rewritten per planning step:
study ids become an enum of *this session's* study ids, finding names an enum of the NIH
findings, free strings get a character-class pattern (a length bound alone lets control
characters through), tuples become fixed-length arrays, optional values lose their `null`
branch (leaving them out means "default"), and unknown properties are forbidden. With vLLM's
structured outputs this makes a call on another session's study unwritable.
"""

from __future__ import annotations

from typing import Any

from radpilot import prompts
from radpilot.core.findings import NIH_FINDINGS
from radpilot.tools.registry import ToolRegistry

STUDY_ID_FIELDS = ("study_id", "prior_id")
# Plain text a planner may write into a query: letters, digits, spaces, common punctuation.
TEXT_PATTERN = "^[A-Za-z0-9][A-Za-z0-9 ,.;:'?()/%+_-]{0,%d}$"
MAX_TEXT = 120  # xgrammar (vLLM 0.32) fails to compile a bounded repeat much above 128

ANSWER, ASK_USER = "answer", "ask_user"


def _inline(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    return dict(defs[ref.rsplit("/", 1)[-1]]) if ref else schema


def _field(
    name: str, schema: dict[str, Any], defs: dict[str, Any], study_ids: list[str]
) -> dict[str, Any]:
    schema = _inline(schema, defs)
    branches = [b for b in schema.get("anyOf", []) if b.get("type") != "null"]
    if branches:  # `X | None`: offer X; leaving the field out means the default
        schema = {**_inline(branches[0], defs), "description": schema.get("description", "")}
    described = {"description": schema["description"]} if schema.get("description") else {}
    if name in STUDY_ID_FIELDS:
        return {"type": "string", "enum": study_ids, **described}
    if name == "finding":
        return {"type": "string", "enum": list(NIH_FINDINGS), **described}
    if name == "findings":
        return {
            "type": "array",
            "items": {"type": "string", "enum": list(NIH_FINDINGS)},
            "maxItems": len(NIH_FINDINGS),
            **described,
        }
    if "prefixItems" in schema:
        size = len(schema["prefixItems"])
        return {
            "type": "array",
            "items": {"type": "number"},
            "minItems": size,
            "maxItems": size,
            **described,
        }
    kept = {
        k: v
        for k, v in schema.items()
        if k in ("type", "enum", "minimum", "maximum", "pattern", "items")
    }
    if kept.get("type") == "string" and "enum" not in kept and "pattern" not in kept:
        longest = min(int(schema.get("maxLength", MAX_TEXT)), MAX_TEXT)
        kept["pattern"] = TEXT_PATTERN.replace("%d", str(longest - 1))
    return {**kept, **described}


def strict_parameters(input_schema: dict[str, Any], study_ids: list[str]) -> dict[str, Any] | None:
    """The tool's parameters for this step, or None when it cannot be called (it needs a study
    and the session has none)."""
    defs = input_schema.get("$defs", {})
    required = list(input_schema.get("required", []))
    if not study_ids and any(name in STUDY_ID_FIELDS for name in required):
        return None
    properties = {
        name: _field(name, schema, defs, study_ids)
        for name, schema in input_schema.get("properties", {}).items()
        if study_ids or name not in STUDY_ID_FIELDS
    }
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


def _function(name: str, description: str, parameters: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": parameters,
            "strict": True,
        },
    }


def control_tools() -> list[dict[str, Any]]:
    """`answer` (compose now) and `ask_user` (one clarifying question)."""
    text = prompts.load("planner")["control"]
    question = {"type": "string", "pattern": TEXT_PATTERN.replace("%d", str(MAX_TEXT - 1))}
    return [
        _function(
            ANSWER,
            text[ANSWER],
            {"type": "object", "properties": {}, "additionalProperties": False},
        ),
        _function(
            ASK_USER,
            text[ASK_USER],
            {
                "type": "object",
                "properties": {"question": question},
                "required": ["question"],
                "additionalProperties": False,
            },
        ),
    ]


def strict_tools(registry: ToolRegistry, study_ids: list[str]) -> list[dict[str, Any]]:
    """Every registered tool that can be called now, plus the control tools."""
    guidance: dict[str, str] = prompts.load("planner")["tools"]
    offered = []
    for name in registry.names():
        # Input schemas only: registry.specs() would also build output schemas and model cards
        # on every planning step.
        tool = registry.get(name)
        parameters = strict_parameters(tool.Input.model_json_schema(), study_ids)
        if parameters is not None:
            description = f"{tool.description} {guidance.get(name, '')}".strip()
            offered.append(_function(name, description, parameters))
    return [*offered, *control_tools()]


def offered_names(tools: list[dict[str, Any]]) -> list[str]:
    return [tool["function"]["name"] for tool in tools]
