"""The LLM planner against a real vLLM server serving a tiny random-weight model.

The model's choices mean nothing; what is tested is the wire: requests with strict tool
schemas, vLLM's grammar-constrained calls and Hermes parsing, plain and streamed replies, the
repair round, the fallback to the embedded planner, and a whole agent turn.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from radpilot.agent.llm.planner import LLMPlanner
from radpilot.agent.llm.schemas import strict_tools
from radpilot.assembly import build_agent, build_registry
from radpilot.core.errors import RadpilotError
from radpilot.llm.breaker import CircuitBreaker
from radpilot.llm.client import ChatClient, ChatReply, ChatRequest
from radpilot.settings import Settings
from tests.factories import chest_like, png_bytes
from tests.unit.test_llm_planner import view
from tests.vllm.server import slow_proxy

pytestmark = pytest.mark.vllm
REGISTRY = build_registry(Settings())
QUESTIONS = [
    "Is there an effusion?",
    "Where is the nodule?",
    "How big is the heart?",
    "Compare with the prior.",
    "What do the guidelines say about pneumothorax?",
]


def client(url: str, *, stream: bool = True, timeout_s: float = 60.0) -> ChatClient:
    settings = Settings()
    return ChatClient(url, "tiny", stream=stream, timeout_s=timeout_s, retries=0,
                      frequency_penalty=settings.llm_frequency_penalty)  # fmt: skip


class Recording:
    """The real client, with every request and reply kept; optionally corrupting replies."""

    def __init__(self, inner: ChatClient, corrupt: int = 0) -> None:
        self.inner, self.model, self.corrupt = inner, inner.model, corrupt
        self.requests: list[ChatRequest] = []
        self.replies: list[ChatReply] = []

    def complete(self, request: ChatRequest) -> ChatReply:
        self.requests.append(request)
        reply = self.inner.complete(request)
        self.replies.append(reply)
        if self.corrupt and reply.tool_calls:
            self.corrupt -= 1  # the same call, on a study of another session
            reply = reply.model_copy(deep=True)
            reply.tool_calls[0].name = "classify_findings"
            reply.tool_calls[0].arguments = json.dumps({"study_id": "st_someone_else"})
        return reply


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_every_step_is_a_valid_call(vllm_url: str, stream: bool) -> None:
    chat = Recording(client(vllm_url, stream=stream))
    planner = LLMPlanner(chat, REGISTRY)
    for question in QUESTIONS:
        for studies in (1, 2):
            decision = planner.plan(view(question, studies=studies))
            assert decision.planner == "llm", decision.attempts
            assert [a.outcome for a in decision.attempts] == ["ok"]
    assert all(reply.streamed is stream for reply in chat.replies)
    assert all(reply.tool_calls for reply in chat.replies)


def test_each_tool_schema_constrains_a_forced_call(vllm_url: str) -> None:
    """Forcing each tool in turn: vLLM must accept every schema, and what it generates under
    it must pass the tool's own validation, except the cross-field rules a JSON schema cannot
    state (those are what the repair round is for)."""
    chat = client(vllm_url, stream=False)
    cross_field = {"segment_region": "box", "similar_cases": "study_id"}
    for tool in strict_tools(REGISTRY, ["st_a", "st_b"]):
        name = tool["function"]["name"]
        reply = chat.complete(ChatRequest(
            messages=[{"role": "user", "content": "Is there an effusion?"}], tools=[tool],
            tool_choice={"type": "function", "function": {"name": name}},
        ))  # fmt: skip
        assert reply.tool_calls and reply.tool_calls[0].name == name
        arguments = json.loads(reply.tool_calls[0].arguments)
        if name in ("answer", "ask_user"):
            continue
        try:
            inputs = REGISTRY.validate(name, arguments).model_dump()
        except RadpilotError as error:
            assert cross_field.get(name, "-") in error.message, (name, error.message)
            continue
        assert {inputs.get(k) for k in ("study_id", "prior_id")} <= {"st_a", "st_b", None}


def test_an_invalid_call_is_repaired_through_the_server(vllm_url: str) -> None:
    chat = Recording(client(vllm_url), corrupt=1)
    decision = LLMPlanner(chat, REGISTRY).plan(view())
    assert [a.outcome for a in decision.attempts] == ["invalid", "ok"]
    assert decision.planner == "llm" and "not in this session" in decision.attempts[0].detail
    repair = chat.requests[1].messages
    assert repair[-1]["role"] == "tool" and "not in this session" in repair[-1]["content"]


def test_two_invalid_calls_fall_back_to_the_embedded_planner(vllm_url: str) -> None:
    chat = Recording(client(vllm_url), corrupt=2)
    decision = LLMPlanner(chat, REGISTRY).plan(view())
    assert decision.planner == "embedded" and len(chat.requests) == 2
    assert decision.calls[0].tool == "classify_findings"
    assert decision.calls[0].arguments["study_id"] == "st_a"


def test_a_slow_llm_degrades_to_the_embedded_planner(vllm_url: str) -> None:
    breaker = CircuitBreaker(threshold=2, cooldown_s=600)
    # The proxy holds each request well past the client's timeout, however fast vLLM answers.
    with slow_proxy(vllm_url, delay_s=2.0) as slow_url:
        planner = LLMPlanner(client(slow_url, timeout_s=0.5), REGISTRY, breaker=breaker)
        outcomes = [planner.plan(view()).attempts[0].outcome for _ in range(3)]
    assert outcomes == ["error", "error", "circuit_open"]


def test_a_whole_turn_with_the_llm_planner(vllm_url: str, tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, llm_url=vllm_url, llm_model="tiny")
    agent = build_agent(settings)
    session = agent.new_session()
    study = agent.add_study(session, png_bytes(chest_like(seed=3)), "chest.png")
    events = list(agent.stream(session, "Is there a pleural effusion?"))
    plans = [e.data for e in events if e.kind == "plan"]
    assert plans and all(p["planner"] in ("llm", "embedded") for p in plans)
    assert any(p["planner"] == "llm" for p in plans)
    for plan in plans:
        for call in plan["calls"]:
            assert call["arguments"].get("study_id") in (study.study_id, None)
    assert events[-1].kind == "final" and any(e.kind == "verify" for e in events)
    answer = agent.state(session).answer
    assert answer is not None and answer.limitations  # decision-support notice at least


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_a_draft_goes_through_the_server_and_the_verifier_has_the_last_word(
    vllm_url: str, stream: bool
) -> None:
    from radpilot.agent.llm.drafter import Drafter
    from radpilot.agent.understanding import Vocabulary
    from radpilot.agent.verifier import Verifier
    from tests.unit.test_llm_drafter import COMPOSED, EVIDENCE, STUDIES

    verifier = Verifier(Vocabulary())
    drafter = Drafter(client(vllm_url, stream=stream), verifier)
    answer, outcome = drafter.draft("Is there an effusion?", COMPOSED, {"E1": EVIDENCE}, STUDIES)
    assert outcome.drafted >= 1, outcome.reason  # the strict draft schema produced claims
    assert outcome.used or answer == COMPOSED
    _, report = verifier.verify(answer, {"E1": EVIDENCE}, STUDIES)
    assert not report.removed
