"""The graph's nodes are module-level functions of the state and LangGraph's runtime, so one
can be called on its own with just the context it reads."""

from types import SimpleNamespace
from typing import Any

from langgraph.checkpoint.memory import InMemorySaver

from radpilot.agent import graph
from radpilot.agent.state import AgentState
from radpilot.agent.types import PlanDecision, ToolCall


def runtime(**context: Any) -> Any:
    return SimpleNamespace(context=SimpleNamespace(**context))


def state(decision: PlanDecision, step: int = 0) -> AgentState:
    return AgentState(question="Is there an effusion?", decision=decision, step=step)


def test_after_plan_runs_tools_until_the_step_limit_then_composes() -> None:
    call = ToolCall(tool="image_info", arguments={}, reason="size")
    calls = PlanDecision(action="call_tools", calls=[call])
    assert graph.after_plan(state(calls, step=1), runtime(max_steps=2)) == "execute"
    assert graph.after_plan(state(calls, step=2), runtime(max_steps=2)) == "compose"
    ask = PlanDecision(action="clarify", question="Which study?")
    assert graph.after_plan(state(ask), runtime(max_steps=2)) == "clarify"


def test_clarify_answers_with_the_planners_question() -> None:
    ask = PlanDecision(action="clarify", question="Which study do you mean?")
    answer = graph.clarify(state(ask), runtime())["answer"]
    assert answer.clarification == "Which study do you mean?" and not answer.claims


def test_the_graph_wires_every_node_and_takes_a_narrow_input() -> None:
    compiled = graph.build_graph(InMemorySaver())
    nodes = set(compiled.get_graph().nodes)
    assert {"understand", "plan", "execute", "compose", "clarify", "verify", "respond"} <= nodes
    assert set(graph.TurnInput.model_fields) == {"question", "trace_id"}
