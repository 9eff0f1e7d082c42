"""The imported local LLM (Gemma 3 270M, `radpilot models import-llm`) served exactly as
`make serve-llm` serves it (radpilot.llm.local's command and environment).

A base model's choices mean little; what is tested is that the real weights load and answer,
that guided decoding keeps every output inside its schema, and that the planner's requests
(prompt length, chat template, `tool_choice="required"`, the repair round) are accepted, so
that every step the product takes is either the model's valid call or the embedded planner's.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Literal

import httpx
import pytest
from pydantic import BaseModel

from radpilot.agent.llm.planner import LLMPlanner
from radpilot.core.findings import NIH_FINDINGS
from radpilot.llm import local
from radpilot.llm.client import ChatClient
from radpilot.settings import Settings
from tests.server import free_port
from tests.unit.test_llm_planner import REGISTRY, view
from tests.vllm.server import vllm_python
from tests.vllm.test_llm_planner_vllm import Recording

pytestmark = pytest.mark.vllm


class Understanding(BaseModel):
    """A small structured reading of a turn, as guided decoding must return it."""

    finding: Literal[NIH_FINDINGS]  # type: ignore[valid-type]
    side: Literal["left", "right", "both", "unspecified"]
    refers_to_prior: bool


@pytest.fixture(scope="module")
def local_llm_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    python = vllm_python()
    if python is None:
        pytest.skip("the vLLM environment is absent: run `make vllm-env` or `make test-vllm`")
    folder = local.local_llm_dir(Settings())
    if not local.is_imported(folder):
        pytest.skip(f"no imported local LLM in {folder}: run `pip install 'radpilot[llm]'` "
                    "and `radpilot models import-llm` (or `make import-llm`)")  # fmt: skip
    scratch = tmp_path_factory.mktemp("local-llm")
    caches = {"VLLM_CACHE_ROOT": str(scratch / "vllm"), "TMPDIR": str(scratch),
              "TORCHINDUCTOR_CACHE_DIR": str(scratch / "inductor"),
              "XDG_CACHE_HOME": str(scratch / "xdg"), "HF_HOME": str(scratch / "hf")}  # fmt: skip
    port, log = free_port(), scratch / "server.log"
    process = local.start_vllm(python, folder, port, log, env=caches)
    try:
        url = f"http://127.0.0.1:{port}/v1"
        seconds = local.wait_until_ready(url, process, log)
        print(f"\nlocal LLM ready in {seconds:.0f} s")
        yield url
    finally:
        local.stop(process)


def chat(url: str, body: dict[str, object]) -> tuple[str, float]:
    started = time.perf_counter()
    reply = httpx.post(f"{url}/chat/completions", timeout=120, json={
        "model": local.LOCAL_LLM_NAME, "temperature": 0, "max_tokens": 80, **body,
    })  # fmt: skip
    assert reply.status_code == 200, reply.text
    return reply.json()["choices"][0]["message"]["content"], time.perf_counter() - started


def test_the_real_weights_continue_text(local_llm_url: str) -> None:
    reply = httpx.post(f"{local_llm_url}/completions", timeout=60, json={
        "model": local.LOCAL_LLM_NAME, "prompt": "The capital of France is", "max_tokens": 6,
        "temperature": 0,
    })  # fmt: skip
    text = reply.json()["choices"][0]["text"]
    # Random or mis-dequantized weights give no English; these give "the capital of...".
    assert reply.status_code == 200 and "capital" in text.lower(), text


def test_a_guided_choice_is_one_of_the_choices(local_llm_url: str) -> None:
    content, _ = chat(local_llm_url, {
        "messages": [{"role": "user", "content": "Is there fluid around the left lung?"}],
        "structured_outputs": {"choice": list(NIH_FINDINGS)},
    })  # fmt: skip
    assert content in NIH_FINDINGS


def test_a_guided_json_reply_is_schema_valid(local_llm_url: str) -> None:
    questions = ("Is there fluid around the left lung?", "Has the nodule grown since last year?",
                 "Is the heart enlarged?")  # fmt: skip
    for question in questions:
        content, seconds = chat(local_llm_url, {
            "messages": [{"role": "system", "content": "Read the question as JSON."},
                         {"role": "user", "content": question}],
            "structured_outputs": {"json": Understanding.model_json_schema()},
        })  # fmt: skip
        Understanding.model_validate_json(content)  # raises if the grammar let anything through
        assert seconds < 30, seconds


def test_planner_requests_are_accepted_and_every_step_is_valid(local_llm_url: str) -> None:
    """The full planner prompt fits, `tool_choice="required"` is served, and a repair round
    (a tool message in the conversation) renders: no step ends in an error."""
    client = ChatClient(local_llm_url, local.LOCAL_LLM_NAME, retries=0, timeout_s=120,
                        frequency_penalty=Settings().llm_frequency_penalty)  # fmt: skip
    for question, studies in (("Is there an effusion?", 1), ("Compare with the prior.", 2)):
        decision = LLMPlanner(client, REGISTRY).plan(view(question, studies=studies))
        outcomes = [a.outcome for a in decision.attempts]
        assert "error" not in outcomes, decision.attempts
        for call in decision.calls:  # whatever reaches the executor passes validation
            REGISTRY.validate(call.tool, call.arguments)
    repaired = Recording(client, corrupt=1)
    decision = LLMPlanner(repaired, REGISTRY).plan(view())
    assert [a.outcome for a in decision.attempts][0] == "invalid"
    assert len(repaired.requests) == 2 and "error" not in [a.outcome for a in decision.attempts]
