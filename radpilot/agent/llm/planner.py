"""The LLM planner: an OpenAI-compatible chat model (vLLM) chooses the next tool call.

Per step: one request with strict tool schemas and `tool_choice="required"`. The call is
validated before anything runs (known tool, JSON arguments, the tool's pydantic Input, study
ids of this session only, no repeat of a call this turn already made). An invalid call gets one
repair round carrying the validation error; if that fails too, or the LLM is unavailable, or
the circuit breaker is open, the embedded planner takes the step. Every attempt is recorded
in the decision (and so in the trace).
"""

from __future__ import annotations

import json
import math
from typing import Any

from radpilot import prompts
from radpilot.agent.dialogue import history
from radpilot.agent.llm.schemas import ANSWER, ASK_USER, offered_names, strict_tools
from radpilot.agent.planner import EmbeddedPlanner, Planner, TurnView
from radpilot.agent.types import PlanDecision, PlannerAttempt, ToolCall
from radpilot.core.contracts import Evidence
from radpilot.core.errors import RadpilotError
from radpilot.llm.breaker import CircuitBreaker
from radpilot.llm.client import (
    ChatModel,
    ChatReply,
    ChatRequest,
    LLMUnavailableError,
)
from radpilot.llm.factory import chat_client
from radpilot.settings import Settings
from radpilot.tools.registry import ToolRegistry

RAW_CALL_CHARS = 500


class InvalidCallError(Exception):
    """The model's call cannot run; the message is what the repair round tells the model."""


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def parse_arguments(text: str) -> dict[str, Any]:
    try:
        arguments = json.loads(text or "{}", parse_constant=_reject_constant)
    except ValueError as error:
        raise InvalidCallError(f"the arguments are not valid JSON ({error})") from None
    if not isinstance(arguments, dict):
        raise InvalidCallError("the arguments must be a JSON object")
    return arguments


def evidence_line(evidence: Evidence) -> str:
    """A one-line account of a ledger entry for the planner's context."""
    values = evidence.values
    if evidence.tool == "classify_findings":
        rows = [r for r in values.get("findings", []) if r.get("status") != "absent"]
        shown = ", ".join(f"{r['name']} {r['status']} ({r['probability']:.2f})" for r in rows)
        return f"{evidence.summary}: {shown or 'no finding present'}"
    scalars = {
        k: v
        for k, v in values.items()
        if isinstance(v, str | int | float) and not (isinstance(v, float) and math.isnan(v))
    }
    brief = ", ".join(f"{k}={v}" for k, v in list(scalars.items())[:4])
    return f"{evidence.summary}{': ' + brief if brief else ''}"


class LLMPlanner:
    name = "llm"

    def __init__(
        self,
        chat: ChatModel,
        registry: ToolRegistry,
        *,
        fallback: Planner | None = None,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.chat = chat
        self.registry = registry
        self.fallback = fallback or EmbeddedPlanner()
        self.breaker = breaker or CircuitBreaker()
        self._prompts: dict[str, Any] = prompts.load("planner")

    def plan(self, view: TurnView) -> PlanDecision:
        attempts: list[PlannerAttempt] = []
        if not self.breaker.allows():
            attempts.append(
                PlannerAttempt(
                    outcome="circuit_open", detail="the LLM failed repeatedly; waiting to retry"
                )
            )
            return self._fall_back(view, attempts)
        tools = strict_tools(self.registry, [s.study_id for s in view.studies])
        messages = self._messages(view)
        for _round in range(2):  # the request, and one repair round
            try:
                reply = self.chat.complete(
                    ChatRequest(messages=messages, tools=tools, tool_choice="required")
                )
            except LLMUnavailableError as error:
                self.breaker.failure()
                attempts.append(PlannerAttempt(outcome="error", detail=error.message))
                return self._fall_back(view, attempts)
            self.breaker.success()
            raw = _raw(reply)
            try:
                decision = self._decide(reply, view, offered_names(tools))
            except InvalidCallError as error:
                attempts.append(
                    PlannerAttempt(
                        outcome="invalid",
                        detail=str(error),
                        raw_call=raw,
                        elapsed_ms=reply.elapsed_ms,
                    )
                )
                messages = [*messages, *self._repair_messages(reply, str(error))]
                continue
            attempts.append(PlannerAttempt(outcome="ok", raw_call=raw, elapsed_ms=reply.elapsed_ms))
            return decision.model_copy(
                update={
                    "planner": self.name,
                    "attempts": attempts,
                    "prompt_version": self._prompts["version"],
                }
            )
        return self._fall_back(view, attempts)

    def _fall_back(self, view: TurnView, attempts: list[PlannerAttempt]) -> PlanDecision:
        decision = self.fallback.plan(view)
        why = attempts[-1].outcome if attempts else "unknown"
        note = f"LLM step not usable ({why}); the {self.fallback.name} planner took this step"
        return decision.model_copy(
            update={
                "planner": self.fallback.name,
                "attempts": attempts,
                "note": f"{note}. {decision.note}".strip(),
                "prompt_version": self._prompts["version"],
            }
        )

    # -- the conversation sent to the model -------------------------------------------------

    def _messages(self, view: TurnView) -> list[dict[str, Any]]:
        text = self._prompts
        examples = "\n\n".join(
            text["context"].format(
                question=ex["question"],
                studies=ex["studies"],
                evidence=ex["evidence"],
                failures="none",
                history=ex.get("history", "none (first question)"),
                resolved=ex.get("resolved", "nothing to resolve"),
            )
            + f"Call: {json.dumps(ex['call'])}"
            for ex in text["examples"]
        )
        system = f"{text['system']}\nExamples:\n\n{examples}"
        return [
            {"role": "system", "content": system},
            {"role": "user", "content": self._context(view)},
        ]

    def _context(self, view: TurnView) -> str:
        # Instruction-like sentences never reach the LLM (the trace lists them as ignored).
        question = view.cleaned_question
        studies = ", ".join(
            f"{s.study_id} ({s.role}{', ' + str(s.acquired) if s.acquired else ''})"
            for s in view.studies
        )
        turn = set(view.turn_evidence)
        evidence = "; ".join(evidence_line(e) for e in view.ledger if e.id in turn)
        failures = "; ".join(f"{f.tool}: {f.message}" for f in view.failures)
        return self._prompts["context"].format(
            question=question,
            studies=studies or "none",
            evidence=evidence or "none yet",
            failures=failures or "none",
            history=history(view.focus),
            resolved="; ".join(view.understanding.resolved) or "nothing to resolve",
        )

    def _repair_messages(self, reply: ChatReply, error: str) -> list[dict[str, Any]]:
        call = reply.tool_calls[0] if reply.tool_calls else None
        feedback = self._prompts["repair"].format(error=error)
        if call is None:
            return [
                {"role": "assistant", "content": reply.content[:RAW_CALL_CHARS]},
                {"role": "user", "content": feedback},
            ]
        call_id = call.id or "call_0"
        return [
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "id": call_id,
                        "type": "function",
                        "function": {
                            "name": call.name,
                            "arguments": call.arguments[:RAW_CALL_CHARS],
                        },
                    }
                ],
            },
            {"role": "tool", "tool_call_id": call_id, "content": feedback},
        ]

    # -- validation ----------------------------------------------------------------------------

    def _decide(self, reply: ChatReply, view: TurnView, offered: list[str]) -> PlanDecision:
        if not reply.tool_calls:
            raise InvalidCallError("no tool was called")
        call = reply.tool_calls[0]
        if call.name not in offered:
            raise InvalidCallError(f"unknown tool {call.name!r}; offered: {', '.join(offered)}")
        arguments = parse_arguments(call.arguments)
        if call.name == ANSWER:
            return PlanDecision(action="compose", note="the LLM judged the evidence sufficient")
        if call.name == ASK_USER:
            question = arguments.get("question")
            if not isinstance(question, str) or not question.strip():
                raise InvalidCallError("ask_user needs a non-empty 'question' string")
            return PlanDecision(action="clarify", question=question.strip())
        try:
            inputs = self.registry.validate_call(
                call.name, arguments, {s.study_id for s in view.studies}
            ).model_dump(mode="json")
        except RadpilotError as error:
            raise InvalidCallError(error.message) from None
        if self._already_done(view, call.name, inputs):
            return PlanDecision(
                action="compose",
                note=f"{call.name} already ran with these arguments this turn; composing",
            )
        return PlanDecision(
            action="call_tools",
            calls=[
                ToolCall(tool=call.name, arguments=arguments, reason="chosen by the LLM planner")
            ],
        )

    @staticmethod
    def _already_done(view: TurnView, tool: str, inputs: dict[str, Any]) -> bool:
        turn = set(view.turn_evidence)
        return any(e.id in turn and e.tool == tool and e.inputs == inputs for e in view.ledger)


def _raw(reply: ChatReply) -> str:
    if not reply.tool_calls:
        return reply.content[:RAW_CALL_CHARS]
    call = reply.tool_calls[0]
    return f"{call.name}({call.arguments})"[:RAW_CALL_CHARS]


def planner_for(settings: Settings, registry: ToolRegistry) -> Planner:
    """The LLM planner when `RADPILOT_LLM_URL` is set, otherwise the embedded one."""
    if settings.llm_url is None:
        return EmbeddedPlanner()
    return LLMPlanner(chat_client(settings.llm_url, settings.llm_model, settings, "llm"), registry)
