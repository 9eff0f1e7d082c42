"""The embedded planner without a study: every intent either composes or calls only tools
that take no study, so no intent needs a hand-kept "needs an image" list."""

from __future__ import annotations

from typing import get_args

import pytest

from radpilot.agent.planner import EmbeddedPlanner, TurnView
from radpilot.agent.types import Intent, Slots, Understanding
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
