"""The LangGraph graph: understand -> plan -> execute (loop) -> compose -> verify -> respond.

Each node is a module-level function of the typed `AgentState` and LangGraph's runtime, whose
context (`TurnContext`: registry, planner, composer, verifier, ...) is built once per process
and passed to every run, as LangGraph's react-agent template does; so a node can be imported
and tested on its own. A turn's input is narrow (`TurnInput`: the question and a trace id);
`understand` resets the turn's own fields. Nodes emit `TraceEvent`s on LangGraph's custom
stream so interfaces can show a turn as it happens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from langgraph.config import get_config, get_stream_writer
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from pydantic import BaseModel

from radpilot.agent.composer import Composer
from radpilot.agent.dialogue import advance
from radpilot.agent.history import SessionHistory
from radpilot.agent.ledger import by_id, evidence_from_result, evidence_id, find_reusable
from radpilot.agent.llm.drafter import Drafter
from radpilot.agent.planner import Planner, ToolFailure, TurnView, plan_parts
from radpilot.agent.state import RECENT_MESSAGES, AgentState, working_ledger
from radpilot.agent.types import DialogueFocus, Message, ToolCall, TraceEvent
from radpilot.agent.understanding import IntentRecognizer
from radpilot.agent.verifier import Verifier
from radpilot.core.errors import RadpilotError
from radpilot.tools.base import ToolContext
from radpilot.tools.registry import ToolRegistry


@dataclass
class TurnContext:
    """Everything the nodes use besides the state; built once per process."""

    registry: ToolRegistry
    tools: ToolContext
    history: SessionHistory
    recognizer: IntentRecognizer
    planner: Planner
    composer: Composer
    verifier: Verifier
    drafter: Drafter | None = None
    max_steps: int = 4


class TurnInput(BaseModel):
    """What starts a turn; the session's fields come from its checkpoint."""

    question: str
    trace_id: str


Context = Runtime[TurnContext]


def _emit(event: TraceEvent) -> TraceEvent:
    get_stream_writer()(event.model_dump(mode="json"))
    return event


def _view(state: AgentState, context: TurnContext) -> TurnView:
    assert state.understanding is not None
    return TurnView(
        question=state.question,
        understanding=state.understanding,
        studies=state.studies,
        ledger=state.evidence,
        turn_evidence=state.turn_evidence,
        failures=state.failures,
        step=state.step,
        available_tools=context.registry.names(),
        focus=state.focus,
    )


def understand(state: AgentState, runtime: Context) -> dict[str, Any]:
    currents = [s.study_id for s in state.studies if s.role == "current"]
    focus = state.focus
    if focus.study_id is not None and currents and focus.study_id != currents[-1]:
        # A new current study: "it" no longer means what was found on the last one.
        focus = DialogueFocus(questions=focus.questions)
    understanding = runtime.context.recognizer.understand(state.question, focus)
    event = _emit(TraceEvent(kind="understand", data=understanding.model_dump(mode="json")))
    # The turn's own fields start afresh; the session's (studies, focus, ledger) carry over.
    return {"understanding": understanding, "decision": None, "turn_evidence": [],
            "failures": [], "step": 0, "trace": [event], "answer": None}  # fmt: skip


def plan(state: AgentState, runtime: Context) -> dict[str, Any]:
    decision = plan_parts(runtime.context.planner, _view(state, runtime.context))
    if decision.action == "call_tools" and not decision.calls:
        decision = decision.model_copy(update={"action": "compose"})
    event = _emit(TraceEvent(kind="plan", data=decision.model_dump(mode="json")))
    return {"decision": decision, "trace": [*state.trace, event]}


def execute(state: AgentState, runtime: Context) -> dict[str, Any]:
    assert state.decision is not None
    ledger, turn = list(state.evidence), list(state.turn_evidence)
    failures, trace = list(state.failures), list(state.trace)
    session_studies = {s.study_id for s in state.studies}
    issued = state.evidence_count
    for call in state.decision.calls:
        trace.append(_emit(TraceEvent(kind="tool_start", data=call.model_dump(mode="json"))))
        outcome = _run_call(runtime.context, call, ledger, session_studies, evidence_id(issued + 1))
        if isinstance(outcome, ToolFailure):
            failures.append(outcome)
            data = {"tool": call.tool, "ok": False, "error": outcome.message}
        else:
            evidence, reused, elapsed = outcome
            if not reused:
                ledger.append(evidence)
                issued += 1
            if evidence.id not in turn:
                turn.append(evidence.id)
            data = {"tool": call.tool, "ok": True, "reused": reused, "elapsed_ms": elapsed,
                    "evidence": evidence.model_dump(mode="json")}  # fmt: skip
        trace.append(_emit(TraceEvent(kind="tool_end", data=data)))
    return {"evidence": ledger, "evidence_count": issued, "turn_evidence": turn,
            "failures": failures, "trace": trace, "step": state.step + 1}  # fmt: skip


def compose(state: AgentState, runtime: Context) -> dict[str, Any]:
    answer = runtime.context.composer.compose(_view(state, runtime.context), state.messages)
    if runtime.context.drafter is None:
        return {"answer": answer}
    assert state.understanding is not None
    question = state.understanding.cleaned
    answer, outcome = runtime.context.drafter.draft(question, answer, by_id(state.evidence),
                                            state.studies)  # fmt: skip
    event = _emit(TraceEvent(kind="draft", data=outcome.model_dump(mode="json")))
    return {"answer": answer, "trace": [*state.trace, event]}


def clarify(state: AgentState, runtime: Context) -> dict[str, Any]:
    from radpilot.agent.types import Answer

    assert state.decision is not None
    return {"answer": Answer(clarification=state.decision.question)}


def verify(state: AgentState, runtime: Context) -> dict[str, Any]:
    assert state.answer is not None
    verifier = runtime.context.verifier
    answer, report = verifier.verify(state.answer, by_id(state.evidence), state.studies)
    event = _emit(TraceEvent(kind="verify", data=report.model_dump(mode="json")))
    return {"answer": answer, "trace": [*state.trace, event]}


def respond(state: AgentState, runtime: Context) -> dict[str, Any]:
    assert state.answer is not None
    answer = state.answer.model_copy(update={"trace_id": state.trace_id})
    trace = list(state.trace)
    for claim in answer.claims:
        trace.append(_emit(TraceEvent(kind="claim", data=claim.model_dump(mode="json"))))
    trace.append(_emit(TraceEvent(kind="final", data=answer.model_dump(mode="json"))))
    text = answer.clarification or " ".join(c.text for c in answer.claims)
    focus = state.focus
    ledger = by_id(state.evidence)
    turn = [ledger[i] for i in state.turn_evidence if i in ledger]
    if state.understanding is not None and answer.clarification is None:
        currents = [s.study_id for s in state.studies if s.role == "current"]
        focus = advance(focus, state.understanding, answer, turn,
                        currents[-1] if currents else None)  # fmt: skip
    exchange = [Message(role="user", text=state.question),
                Message(role="assistant", text=text, answer=answer)]  # fmt: skip
    # The whole session goes to the history, the state keeps what the next turn needs.
    # Both are written before the turn's one checkpoint, whose counters say what
    # happened: a turn cut off by a crash leaves no half-written exchange behind.
    ran = [e.data for e in state.trace if e.kind == "tool_end" and e.data["ok"]]
    fresh = {data["evidence"]["id"] for data in ran if not data["reused"]}
    count = state.message_count
    runtime.context.history.write(get_config()["configurable"]["thread_id"],
                          list(enumerate(exchange, start=count)),
                          [e for e in turn if e.id in fresh])  # fmt: skip
    recent = [*state.messages, *exchange][-RECENT_MESSAGES:]
    return {
        "answer": answer,
        "trace": trace,
        "focus": focus,
        "messages": recent,
        "message_count": count + len(exchange),
        "evidence": working_ledger(state.evidence, focus, recent, state.turn_evidence),
    }


def after_plan(state: AgentState, runtime: Context) -> str:
    assert state.decision is not None
    if state.decision.action == "clarify":
        return "clarify"
    if state.decision.action == "call_tools" and state.step < runtime.context.max_steps:
        return "execute"
    return "compose"


def build_graph(checkpointer: Any) -> Any:
    """The compiled graph; run it with `context=TurnContext(...)`."""
    graph = StateGraph(AgentState, context_schema=TurnContext, input_schema=TurnInput)
    for name, node in [("understand", understand), ("plan", plan), ("execute", execute),
                       ("compose", compose), ("clarify", clarify), ("verify", verify),
                       ("respond", respond)]:  # fmt: skip
        graph.add_node(name, node)
    graph.add_edge(START, "understand")
    graph.add_edge("understand", "plan")
    graph.add_conditional_edges("plan", after_plan, ["execute", "compose", "clarify"])
    graph.add_edge("execute", "plan")
    graph.add_edge("compose", "verify")
    graph.add_edge("verify", "respond")
    graph.add_edge("clarify", "respond")
    graph.add_edge("respond", END)
    return graph.compile(checkpointer=checkpointer)


def _run_call(
    context: TurnContext, call: ToolCall, ledger: list[Any], session_studies: set[str], new_id: str
) -> ToolFailure | tuple[Any, bool, float]:
    """Validate, check session ownership of studies, reuse or run; never raises."""
    try:
        inputs = context.registry.validate_call(call.tool, call.arguments, session_studies)
    except RadpilotError as error:
        return ToolFailure(tool=call.tool, arguments=call.arguments, code=error.code,
                           message=error.message)  # fmt: skip
    reusable = find_reusable(ledger, call.tool, inputs.model_dump(mode="json"))
    if reusable is not None:
        return reusable, True, 0.0
    result = context.registry.run(call.tool, inputs, context.tools)
    if not result.ok or result.error is not None:
        failure = result.error
        return ToolFailure(tool=call.tool, arguments=call.arguments,
                           code=failure.code if failure else "error",
                           message=failure.message if failure else "failed")  # fmt: skip
    return evidence_from_result(result, new_id), False, result.elapsed_ms
