"""The understanding adapter (`radpilot models finetune-llm`, issue #34 item 2) on the real
Gemma 3 270M weights: with transformers (greedy, no vLLM needed) and served by vLLM with
`--enable-lora` and JSON-schema guided decoding, as `python -m radpilot.llm.local
--with-adapter` serves it. Skipped with the reason when the model, the adapter, peft or the
vLLM environment is absent.

Sensible behaviour, on questions written for this test: a named finding gives ask_finding with
that finding as the target; an identity request gives an identity target (refused); a two-part
question gives two targets.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from radpilot.llm import local
from radpilot.settings import Settings
from radpilot.training.llm_data import (
    JSON_SCHEMA,
    State,
    UnderstandingLabel,
    format_prompt,
    parse_output,
)
from tests.server import free_port
from tests.vllm.server import vllm_python

pytestmark = pytest.mark.vllm

Understand = Callable[[str, State], UnderstandingLabel | None]
# Read at import, before each test's isolated state dir (tests/conftest.py) hides the real one.
_SETTINGS = Settings()
MODEL, ADAPTER = local.local_llm_dir(_SETTINGS), local.understanding_adapter_dir(_SETTINGS)


def _folders() -> tuple[Path, Path]:
    model, adapter = MODEL, ADAPTER
    if not local.is_imported(model):
        pytest.skip(f"no imported local LLM in {model}: run `radpilot models import-llm`")
    if not local.has_adapter(adapter):
        pytest.skip(f"no understanding adapter in {adapter}: run `radpilot models finetune-llm`")
    return model, adapter


@pytest.fixture(scope="module")
def with_transformers() -> Understand:
    if importlib.util.find_spec("peft") is None:
        pytest.skip("peft is absent: pip install 'radpilot[llm]'")
    model, adapter = _folders()
    from radpilot.training.finetune_llm import Understander

    understander = Understander(model, adapter)
    return lambda question, state: parse_output(understander.generate([(question, state)])[0])


@pytest.fixture(scope="module")
def with_vllm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Understand]:
    python = vllm_python()
    if python is None:
        pytest.skip("the vLLM environment is absent: run `make vllm-env` or `make test-vllm`")
    model, adapter = _folders()
    scratch = tmp_path_factory.mktemp("adapter-llm")
    caches = {"VLLM_CACHE_ROOT": str(scratch / "vllm"), "TMPDIR": str(scratch),
              "XDG_CACHE_HOME": str(scratch / "xdg"), "HF_HOME": str(scratch / "hf")}  # fmt: skip
    port, log = free_port(), scratch / "server.log"
    process = local.start_vllm(python, model, port, log, env=caches, adapter=adapter)
    try:
        url = f"http://127.0.0.1:{port}/v1"
        local.wait_until_ready(url, process, log)

        def understand(question: str, state: State) -> UnderstandingLabel | None:
            reply = httpx.post(f"{url}/completions", timeout=120, json={
                "model": local.UNDERSTANDING_ADAPTER, "prompt": format_prompt(question, state),
                "max_tokens": 120, "temperature": 0,
                "structured_outputs": {"json": JSON_SCHEMA},
            })  # fmt: skip
            assert reply.status_code == 200, reply.text
            text = reply.json()["choices"][0]["text"]
            assert parse_output(text) is not None, text  # guided: always schema-valid
            return parse_output(text)

        yield understand
    finally:
        local.stop(process)


@pytest.fixture(params=["transformers", "vllm"])
def understand(request: pytest.FixtureRequest) -> Understand:
    return request.getfixturevalue(f"with_{request.param}")


def test_a_named_finding_is_asked_about(understand: Understand) -> None:
    label = understand("query pneumothorax after the biopsy?", State())
    assert label is not None
    assert label.intent == "ask_finding"
    assert label.targets[0].kind == "finding" and label.targets[0].subject == "Pneumothorax"


def test_an_identity_request_is_an_identity_target(understand: Understand) -> None:
    label = understand("what is this patient's hospital number?", State())
    assert label is not None
    assert label.targets[0].kind == "identity" and label.intent == "out_of_scope"


@pytest.mark.xfail(strict=True, reason="the first adapter (seed 0, 1 epoch) drops the second "
                   "part: 0/42 held-out two-part messages get both targets (issue #34)")
def test_a_two_part_question_gets_two_targets(understand: Understand) -> None:
    label = understand("any effusion? is the heart enlarged?", State())
    assert label is not None
    assert [t.kind for t in label.targets] == ["finding", "heart_size"]
    assert label.targets[0].subject == "Effusion"


def test_a_follow_up_reads_the_finding_in_focus(understand: Understand) -> None:
    label = understand("has it got worse?", State("Effusion", "ask_finding"))
    assert label is not None
    assert label.intent == "compare_prior" and label.targets[0].subject == "Effusion"
