"""The CLI as a user meets it: real subprocesses, exit codes, no tracebacks."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.factories import chest_like, make_dicom, png_bytes, png_header_only, write


def radpilot(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "radpilot.app.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_help_imports_nothing_heavy() -> None:
    probe = (
        "import sys; from radpilot.app.cli import build_parser; build_parser(); "
        "heavy = {'torch', 'numpy', 'pydantic', 'PIL', 'pydicom', 'gradio', 'chromadb'}; "
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    assert radpilot("--help").returncode == 0


def test_version() -> None:
    from radpilot import __version__

    assert radpilot("version").stdout.strip() == f"radpilot {__version__}"


def test_tools_list_shows_name_description_and_schema() -> None:
    out = radpilot("tools", "list").stdout
    assert "image_info" in out and "input schema" in out and "study_id" in out
    specs = {spec["name"]: spec for spec in json.loads(radpilot("tools", "list", "--json").stdout)}
    assert set(specs) >= {"image_info", "classify_findings", "localize_finding",
                          "search_guidelines", "knowledge_graph", "similar_cases"}  # fmt: skip
    assert specs["image_info"]["input_schema"]["required"] == ["study_id"]
    assert specs["classify_findings"]["model_cards"][0]["name"] == "starter-classifier"


def test_tools_list_names_what_the_agent_is_offered(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a vision-language model configured the agent has `describe_image`: so does the
    list (it is built from the same settings); without one, neither has it."""
    assert "describe_image" not in radpilot("tools", "list").stdout
    monkeypatch.setenv("RADPILOT_VLM_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("RADPILOT_VLM_MODEL", "medgemma")
    names = {spec["name"] for spec in json.loads(radpilot("tools", "list", "--json").stdout)}
    assert "describe_image" in names


def test_tools_run_prints_the_result_json(tmp_path: Path) -> None:
    image = write(tmp_path / "cxr.dcm", make_dicom(modality="CR"))
    result = radpilot("tools", "run", "image_info", "--image", str(image))
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)["output"]
    assert (output["modality"], output["width"], output["qc_ok"]) == ("CR", 256, True)


def test_tools_run_keeps_nothing_and_logs_no_identity(tmp_path: Path, isolated_state: Path) -> None:
    image = write(tmp_path / "cxr.dcm", make_dicom())
    result = radpilot("tools", "run", "image_info", "--image", str(image))
    assert "MRN-8675309" not in result.stdout + result.stderr
    assert not (isolated_state / "studies").exists()


BAD_INPUTS = {
    "empty.png": (b"", "empty"),
    "truncated.png": (png_bytes(chest_like(300, 300))[:400], "truncated or corrupt"),
    "text.png": (b"Patient notes, definitely not a picture\n" * 20, "not a PNG, JPEG or DICOM"),
    "bomb.png": (png_header_only(40000, 40000), "1600 megapixels"),
    "ct.dcm": (make_dicom(modality="CT"), "modality CT is not a radiograph"),
    "nopixels.dcm": (make_dicom(with_pixels=False), "no pixel data"),
}


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_bad_inputs_are_clear_errors_with_exit_code_2(tmp_path: Path, name: str) -> None:
    data, words = BAD_INPUTS[name]
    result = radpilot("tools", "run", "image_info", "--image", str(write(tmp_path / name, data)))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stderr.startswith("radpilot: error:")
    assert words in result.stderr


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["tools", "run", "no_such_tool"], "unknown tool 'no_such_tool'"),
        (["tools", "run", "image_info", "--args", "{oops"], "--args is not valid JSON"),
        (["tools", "run", "image_info", "--args", "[1]"], "must be a JSON object"),
        (["tools", "run", "image_info"], "study_id: Field required"),
        (["tools", "run", "image_info", "--image", "/nonexistent.png"], "cannot read"),
        (["deid", "/nonexistent.dcm", "/tmp/x.dcm"], "does not exist"),
        (
            ["eval", "tests/fixtures/scenarios/good", "--data", ".", "--planner", "llm"],
            "--planner llm needs an endpoint",
        ),
        (
            [
                "eval",
                "tests/fixtures/scenarios/good",
                "--data",
                ".",
                "--planner",
                "llm",
                "--llm-url",
                "http://127.0.0.1:9/v1",
            ],
            "RADPILOT_LLM_MODEL",
        ),
        (["models", "train", "anatomy", "--arch", "efficientnet-lite1"], "classifier only"),
        (["models", "compare-classifiers", "/nonexistent", "--data", "."], "not a classifier"),
        (["models", "domain-guard", "--bundle", "/nonexistent", "--data", "."],
         "not a classifier"),  # fmt: skip
        (["models", "domain-guard", "--data", "/nonexistent"], "no data folder"),
    ],
)
def test_misuse_is_a_clear_error(args: list[str], words: str) -> None:
    result = radpilot(*args)
    assert result.returncode == 2
    assert words in result.stderr
    assert "Traceback" not in result.stderr

