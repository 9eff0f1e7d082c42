from pathlib import Path

import pytest

from radpilot.assembly import build_registry
from radpilot.core.errors import IngestError, RadpilotError, ToolArgumentError, ToolNotFoundError
from radpilot.settings import Settings
from radpilot.tools.base import Tool, ToolContext, ToolInput, ToolOutput
from radpilot.tools.registry import ToolRegistry
from tests.factories import chest_like, png_bytes


class EchoInput(ToolInput):
    text: str
    times: int = 1


class EchoOutput(ToolOutput):
    echoed: str


class EchoTool(Tool[EchoInput, EchoOutput]):
    name = "echo"
    description = "Repeat text."
    Input = EchoInput
    Output = EchoOutput

    def run(self, inp: EchoInput, ctx: ToolContext) -> EchoOutput:
        if inp.text == "user-error":
            raise IngestError("the image is blank")
        if inp.text == "bug":
            raise ZeroDivisionError("hidden detail")
        return EchoOutput(echoed=inp.text * inp.times)


@pytest.fixture
def context(tmp_path: Path) -> ToolContext:
    return ToolContext.create(Settings(), root=tmp_path)


def test_runs_a_valid_call_and_times_it(context: ToolContext) -> None:
    result = ToolRegistry([EchoTool()]).run("echo", {"text": "ab", "times": 2}, context)
    assert result.ok
    assert result.output is not None and result.output["echoed"] == "abab"
    assert result.inputs == {"text": "ab", "times": 2}
    assert result.elapsed_ms >= 0


def test_unknown_tool_is_a_clear_error_listing_known_tools(context: ToolContext) -> None:
    with pytest.raises(ToolNotFoundError, match="unknown tool 'nope'; known tools: echo"):
        ToolRegistry([EchoTool()]).run("nope", {}, context)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({}, "text: Field required"),
        ({"text": "a", "times": "many"}, "times: Input should be a valid integer"),
        ({"text": "a", "colour": "red"}, "colour: Extra inputs are not permitted"),
    ],
)
def test_bad_arguments_are_one_readable_line(
    context: ToolContext, arguments: dict[str, object], message: str
) -> None:
    with pytest.raises(ToolArgumentError) as error:
        ToolRegistry([EchoTool()]).run("echo", arguments, context)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_a_tool_refusal_becomes_a_failed_result(context: ToolContext) -> None:
    result = ToolRegistry([EchoTool()]).run("echo", {"text": "user-error"}, context)
    assert not result.ok
    assert result.error is not None
    assert result.error.code == "ingest_error"
    assert result.error.message == "the image is blank"


def test_a_tool_bug_is_contained_without_leaking_details(context: ToolContext) -> None:
    result = ToolRegistry([EchoTool()]).run("echo", {"text": "bug"}, context)
    assert not result.ok
    assert result.error is not None
    assert result.error.code == "internal_error"
    assert "hidden detail" not in result.error.message


def test_duplicate_names_are_refused() -> None:
    with pytest.raises(ValueError, match="already registered"):
        ToolRegistry([EchoTool(), EchoTool()])


def test_specs_carry_json_schemas_for_planners() -> None:
    spec = ToolRegistry([EchoTool()]).spec("echo")
    assert spec.input_schema["required"] == ["text"]
    assert spec.input_schema["additionalProperties"] is False
    assert "echoed" in spec.output_schema["properties"]


def test_image_info_reports_size_and_qc(context: ToolContext) -> None:
    study = context.studies.ingest(png_bytes(chest_like(300, 400)), "x.png")
    result = build_registry(Settings()).run("image_info", {"study_id": study.id}, context)
    assert result.ok and result.output is not None
    assert (result.output["width"], result.output["height"]) == (400, 300)
    assert result.output["qc_ok"] is True
    estimate = result.output["view_estimate"]  # a PNG records no projection: the model's
    assert result.output["limitations"] == [
        "projection not recorded (no DICOM view tag); assumed frontal",
        f"Projection not recorded in the file: estimated {estimate['view']} by the projection "
        f"model starter-view (probability {estimate['probability']:.2f}), trained on one "
        "archive (NIH) and on frontal films only.",
    ]


def test_image_info_on_an_unknown_study_fails_cleanly(context: ToolContext) -> None:
    result = build_registry(Settings()).run("image_info", {"study_id": "st_missing"}, context)
    assert not result.ok
    assert result.error is not None and result.error.code == "unknown_study"


def test_a_call_may_name_only_the_sessions_studies() -> None:
    """The one check the executor, the LLM planner and MCP share: a study id outside the
    session is refused; a left-out optional study id (text-only similar cases) names none."""
    registry = build_registry(Settings())
    text_only = registry.validate_call("similar_cases", {"text": "left pleural effusion"}, set())
    assert text_only.study_id is None and text_only.text == "left pleural effusion"  # type: ignore[attr-defined]
    # What it returns is what `run` takes: an Input already validated is not validated again.
    assert registry.validate("similar_cases", text_only) is text_only
    assert registry.validate_call("image_info", {"study_id": "st_mine"}, {"st_mine"})
    with pytest.raises(RadpilotError) as refused:
        registry.validate_call("image_info", {"study_id": "st_theirs"}, {"st_mine"})
    assert refused.value.code == "unknown_study" and "st_theirs" in refused.value.message
