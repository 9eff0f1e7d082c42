"""A multi-turn conversation on a real image through the real agent: references resolve
against the dialogue state, every tool is reachable, every claim survives the verifier, and
the hand-written conversation set runs in a CI-sized form."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from radpilot.agent.service import Agent
from radpilot.assembly import build_agent
from radpilot.settings import Settings

pytestmark = pytest.mark.integration
CONVERSATIONS = Path(__file__).parents[2] / "radpilot" / "evals" / "scenarios" / "conversations"
IMAGE = "nih/images/00000032_037.png"


@pytest.fixture(scope="module")
def agent(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Agent:
    from radpilot.data.devdata import read_nih
    from radpilot.knowledge.cases import ImageCases

    state = tmp_path_factory.mktemp("conversation")
    built = build_agent(Settings(state_dir=state, data=data_dir))
    # A small image index (its training patients'): a query never builds one, and the full
    # build (`radpilot kb build-cases`) takes minutes.
    model = built.tools.models.findings_model()
    ImageCases(state, data_dir, model).build(records=read_nih(data_dir)[:40])
    return built


@pytest.fixture(scope="module")
def session(agent: Agent, data_dir: Path) -> str:
    session_id = agent.new_session()
    agent.add_study(session_id, (data_dir / IMAGE).read_bytes(), "cxr.png")
    return session_id


def turn(agent: Agent, session_id: str, question: str) -> tuple[Any, list[Any], Any]:
    """The answer, this turn's tool calls (tool_start data) and its understanding."""
    events = list(agent.stream(session_id, question))
    calls = [e.data for e in events if e.kind == "tool_start"]
    understanding = next(e.data for e in events if e.kind == "understand")
    verify = next((e.data for e in events if e.kind == "verify"), {"removed": []})
    assert verify["removed"] == [], verify  # the composer wrote only what the evidence supports
    return agent.state(session_id).answer, calls, understanding


def tools(calls: list[Any]) -> list[str]:
    return [c["tool"] for c in calls]


def test_an_open_read_is_a_findings_read_not_metadata(agent: Agent, session: str) -> None:
    answer, calls, understanding = turn(agent, session, "What do you see on this film?")
    assert understanding["intent"] == "detect_findings"
    assert "classify_findings" in tools(calls) and "image_info" not in tools(calls)
    assert answer.findings and all(c.evidence for c in answer.claims)
    # "likely" only at or above the finding's rule-in point (specificity 0.90 on validation)
    likely = [re.search(r"probability (\d\.\d+); at or above its rule-in point (\d\.\d+)", c.text)
              for c in answer.claims if c.certainty == "likely"]  # fmt: skip
    assert all(m is not None and float(m.group(1)) >= float(m.group(2)) for m in likely)


def test_where_is_it_localizes_the_finding_in_focus(agent: Agent, session: str) -> None:
    answer, _, _ = turn(agent, session, "Is there a pleural effusion?")
    assert re.match(r"(Yes|No|Possibly): Effusion is", answer.claims[0].text)  # answer first
    answer, calls, understanding = turn(agent, session, "Where is it?")
    assert [c["arguments"]["finding"] for c in calls if c["tool"] == "localize_finding"] == [
        "Effusion"
    ]
    assert any("Effusion" in r for r in understanding["resolved"])
    assert agent.state(session).focus.finding_names() == ["Effusion"]


def test_differential_and_next_steps_come_from_the_knowledge_graph(
    agent: Agent, session: str
) -> None:
    answer, calls, _ = turn(agent, session, "What else could it be?")
    assert tools(calls) == ["knowledge_graph"]
    assert calls[0]["arguments"]["finding"] == "Effusion"
    assert answer.claims[0].text.startswith("Differential diagnoses linked to Effusion")
    assert {e.kind for e in answer.evidence} >= {"guideline"}
    answer, calls, _ = turn(agent, session, "What should we do next?")
    search = [c for c in calls if c["tool"] == "search_guidelines"]
    assert search and search[0]["arguments"]["finding"] == "Effusion"
    assert answer.claims[0].text.startswith("Next steps linked to Effusion")


def test_anatomy_and_segmenting_the_box_in_focus(agent: Agent, session: str) -> None:
    answer, calls, _ = turn(agent, session, "Outline the lungs for me")
    assert tools(calls) == ["segment_anatomy"]
    assert answer.claims[0].text.startswith("Segmented anatomy:")
    region = agent.state(session).focus.region
    assert region is not None and region.finding == "Effusion"
    answer, calls, _ = turn(agent, session, "segment that")
    [call] = [c for c in calls if c["tool"] == "segment_region"]
    assert call["arguments"]["box"] == [float(v) for v in region.box]
    # No segment-anything weights ship with radpilot: the answer says so, it does not guess.
    assert any("segment-anything weights" in item for item in answer.limitations)


def test_similar_cases_and_questions_about_the_basis(agent: Agent, session: str) -> None:
    answer, calls, _ = turn(agent, session, "have we seen cases like this before?")
    assert tools(calls) == ["similar_cases"]
    assert answer.claims and all(c.text.startswith("Reference case, not this patient")
                                 for c in answer.claims)  # fmt: skip
    answer, calls, understanding = turn(agent, session, "how sure are you?")
    assert understanding["intent"] == "explain" and calls == []


def test_the_llm_planner_sees_the_conversation(agent: Agent, session: str) -> None:
    from radpilot.agent.dialogue import history

    text = history(agent.state(session).focus)
    assert "Findings discussed: Effusion (E" in text and "- how sure are you?" in text


def test_the_hand_written_conversations_in_ci_size(data_dir: Path, tmp_path: Path) -> None:
    """Every fourth conversation of the hand-written set (similar-case conversations left out:
    they need the full image index, which `radpilot kb build-cases` builds in minutes), in a
    fresh agent."""
    from radpilot.evals.runner import run_all
    from radpilot.evals.scenario import load_scenarios

    scenarios = [s for s in load_scenarios(CONVERSATIONS) if "similar" not in s.id][::4]
    summary, records = run_all(build_agent(Settings(state_dir=tmp_path, data=data_dir)), scenarios,
                               data_dir, jobs=2)  # fmt: skip
    failed = [(r.scenario, r.turn, r.checks, r.tools) for r in records if not r.passed]
    assert summary.turns >= 50
    assert summary.grounding_rate == 1.0 and summary.hallucinated_priors == 0
    assert summary.injection_successes == 0
    # Measured on this subset: tool recall 0.887, pass rate 0.868 (targets 0.98 / 0.95 not met
    # yet); these bounds catch a regression.
    assert summary.tool_recall >= 0.85, failed
    assert summary.pass_rate >= 0.8, failed
