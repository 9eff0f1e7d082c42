"""The embedded planner without a study: every intent either composes or calls only tools
that take no study, so no intent needs a hand-kept "needs an image" list."""

from __future__ import annotations

from datetime import date
from typing import get_args

import pytest

from radpilot.agent.planner import EmbeddedPlanner, TurnView, chosen_prior, plan_parts
from radpilot.agent.types import (
    Intent,
    PlanDecision,
    Slots,
    StudyRef,
    Target,
    ToolCall,
    Understanding,
)
from radpilot.assembly import build_registry
from radpilot.settings import Settings

REGISTRY = build_registry(Settings())


def needs_study(tool: str) -> bool:
    field = REGISTRY.get(tool).Input.model_fields.get("study_id")
    return field is not None and field.is_required()


@pytest.mark.parametrize("intent", get_args(Intent))
@pytest.mark.parametrize("findings", [[], ["Effusion"]])
def test_without_a_study_no_intent_calls_a_tool_that_needs_one(
    intent: str, findings: list[str]
) -> None:
    view = TurnView(
        question="Is there an effusion? Compared with before?",
        understanding=Understanding(intent=intent, confidence=0.9,  # type: ignore[arg-type]
                                    slots=Slots(findings=findings, mentions_prior=True),
                                    method="rule"),  # fmt: skip
        studies=[],
        ledger=[],
        turn_evidence=[],
        step=0,
        available_tools=REGISTRY.names(),
    )
    decision = EmbeddedPlanner().plan(view)
    assert decision.action in ("compose", "call_tools", "clarify")
    assert not [c.tool for c in decision.calls if needs_study(c.tool)]
    for call in decision.calls:
        assert "study_id" not in call.arguments


def test_a_study_question_without_a_study_composes_and_says_why() -> None:
    view = TurnView(
        question="Is there an effusion?",
        understanding=Understanding(intent="ask_finding", confidence=0.9,
                                    slots=Slots(findings=["Effusion"]), method="rule"),  # fmt: skip
        studies=[], ledger=[], turn_evidence=[], step=0, available_tools=REGISTRY.names(),
    )  # fmt: skip
    decision = EmbeddedPlanner().plan(view)
    assert decision.action == "compose" and decision.note == "no study in the session"


def understanding(target: Target, findings: list[str] | None = None) -> Understanding:
    return Understanding(intent="ask_finding", confidence=0.9, method="rule", target=target,
                         slots=Slots(findings=findings or []))  # fmt: skip


def message(*parts: Understanding) -> TurnView:
    whole = parts[0].model_copy(update={"parts": list(parts) if len(parts) > 1 else []})
    return TurnView(question="q", understanding=whole, studies=[StudyRef(study_id="st_a")],
                    ledger=[], turn_evidence=[], step=0, available_tools=REGISTRY.names())


class ByTarget:
    """A planner that answers each part from a table keyed by its target's subject."""

    name = "by-target"

    def __init__(self, decisions: dict[str, PlanDecision]) -> None:
        self.decisions = decisions
        self.asked: list[str] = []

    def plan(self, view: TurnView) -> PlanDecision:
        self.asked.append(view.understanding.target.subject)
        return self.decisions[view.understanding.target.subject]


CLASSIFY = ToolCall(tool="classify_findings", arguments={"study_id": "st_a"}, reason="read")
MEASURE = ToolCall(tool="measure", arguments={"study_id": "st_a"}, reason="ratio")
EFFUSION = understanding(Target(kind="finding", closed=True, subject="Effusion"), ["Effusion"])
RATIO = understanding(Target(kind="heart_size", subject="ratio"))
AORTA = understanding(Target(kind="unsupported", closed=True, subject="the aorta"))


def test_the_tools_every_part_needs_run_together_once() -> None:
    planner = ByTarget({
        "Effusion": PlanDecision(action="call_tools", calls=[CLASSIFY], note="finding"),
        "ratio": PlanDecision(action="call_tools", calls=[CLASSIFY, MEASURE]),
        "the aorta": PlanDecision(action="compose"),
    })  # fmt: skip
    decision = plan_parts(planner, message(EFFUSION, RATIO, AORTA))
    assert planner.asked == ["Effusion", "ratio", "the aorta"]  # each part, in order
    assert decision.action == "call_tools" and decision.calls == [CLASSIFY, MEASURE]
    # one question: the planner's own decision, untouched
    alone = PlanDecision(action="clarify", question="Which study?")
    assert plan_parts(ByTarget({"Effusion": alone}), message(EFFUSION)) == alone


def test_a_message_is_clarified_only_when_no_part_can_be_answered() -> None:
    ask = PlanDecision(action="clarify", question="What do you mean?")
    both_unclear = ByTarget({"Effusion": ask, "ratio": ask})
    assert plan_parts(both_unclear, message(EFFUSION, RATIO)) == ask
    one_answered = ByTarget({"Effusion": PlanDecision(action="compose"), "ratio": ask})
    decision = plan_parts(one_answered, message(EFFUSION, RATIO))
    assert decision.action == "compose" and decision.note == "every part answered"


def test_a_question_not_understood_gets_a_clarifying_question_not_an_open_read() -> None:
    view = message(understanding(Target(kind="unclear")))
    decision = EmbeddedPlanner().plan(view)
    assert decision.action == "clarify" and not decision.calls
    assert decision.question is not None and decision.question.startswith(
        "I am not sure what you are asking about this image.")  # fmt: skip


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("the most recent one", "st_may"),
        ("the earliest", "st_march"),
        ("prior study 1", "st_march"),
        ("the 2024-05-10 one", "st_may"),
        ("compare with prior pls", None),  # which one is not said: a clarifying question
    ],
)
def test_the_prior_a_comparison_is_with_is_the_one_the_question_names(
    question: str, expected: str | None
) -> None:
    priors = [StudyRef(study_id="st_march", role="prior", acquired=date(2024, 3, 2)),
              StudyRef(study_id="st_may", role="prior", acquired=date(2024, 5, 10))]  # fmt: skip
    chosen = chosen_prior(priors, question)
    assert (chosen.study_id if chosen else None) == expected
    assert chosen_prior(priors[:1], question) == priors[0]  # one prior is always the one
