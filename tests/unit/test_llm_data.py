"""The understanding fine-tune's data and label logic (radpilot/training/llm_data.py): no
weights, no model, no evaluation sets."""

from __future__ import annotations

import json
import typing
from pathlib import Path

import pytest

from radpilot import prompts
from radpilot.agent.types import Intent, Slots, Target, TargetKind, Understanding
from radpilot.llm.local import UNDERSTANDING_ADAPTER, vllm_command
from radpilot.training import llm_data
from radpilot.training.finetune_llm import fresh_cases, kinds
from radpilot.training.llm_data import (
    State,
    TargetLabel,
    UnderstandingLabel,
    build_dataset,
    compose_items,
    format_prompt,
    held_out_groups,
    label_from_understanding,
    parse_output,
)


def fake_teacher(question: str, state: State) -> UnderstandingLabel:
    """Deterministic and cheap: enough to check the plumbing, not the labels' meaning."""
    parts = max(1, question.count("?"))
    kind = "finding" if "?" in question else "read"
    side = "left" if "left" in question else None
    targets = tuple(TargetLabel(kind=kind, subject="", closed=kind == "finding", side=side)
                    for _ in range(min(parts, 4)))  # fmt: skip
    return UnderstandingLabel(intent="ask_finding" if parts else "detect_findings",
                              targets=targets)  # fmt: skip


def test_label_vocabularies_match_the_agent_types() -> None:
    assert typing.get_args(Intent) == llm_data.INTENTS
    assert typing.get_args(TargetKind) == llm_data.TARGET_KINDS


def test_items_are_deterministic_for_a_seed_and_come_from_the_prompt_files(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    read: list[str] = []
    real = prompts.load

    def recording(name: str) -> object:
        read.append(name)
        return real(name)

    monkeypatch.setattr(prompts, "load", recording)
    first = compose_items(3)
    assert compose_items(3) == first
    assert compose_items(4) != first
    assert set(read) == {"intents", "targets", "findings"}
    exemplars = {t for texts in real("intents").values() for t in texts}
    assert exemplars <= {i.question for i in first}  # every exemplar is asked
    assert {i.source for i in first} >= {"intents.yaml", "findings.yaml", "targets.yaml"}


def test_held_out_is_by_group_about_fifteen_percent_of_each_family() -> None:
    items = compose_items(0)
    held = held_out_groups(items, 0)
    groups = {i.group for i in items}
    assert 0.12 < len(held) / len(groups) < 0.18
    for family in ("exemplar:ask_finding", "finding", "unsupported", "follow_up"):
        members = {g for g in groups if g.startswith(family + ":")}
        assert members & held and members - held  # both splits hold some of each family
    assert held_out_groups(items, 0) == held and held_out_groups(items, 1) != held


def test_dataset_splits_never_share_a_group_and_pairs_stay_within_a_split() -> None:
    data = build_dataset(fake_teacher, seed=0, per_template=4)
    train, held = data.split("train"), data.split("held_out")
    assert train and held and data.stats["rows"] == len(train) + len(held)
    singles = {split: {r.item.group for r in rows if r.item.parts == 1}
               for split, rows in (("train", train), ("held_out", held))}  # fmt: skip
    assert not singles["train"] & singles["held_out"]
    for split, rows in (("train", train), ("held_out", held)):
        for row in rows:
            if row.item.parts == 2:
                a, b = row.item.group.removeprefix("pair:").split("|")
                assert {a, b} <= singles[split]
                assert row.item.state.first_turn
    again = build_dataset(fake_teacher, seed=0, per_template=4)
    assert [r.as_dict() for r in again.rows] == [r.as_dict() for r in data.rows]


def test_prompts_are_short_and_carry_the_state_line() -> None:
    data = build_dataset(fake_teacher, seed=0, per_template=4)
    for row in data.rows:
        prompt = row.prompt()
        first, question, cue = prompt.split("\n")
        assert first.startswith("focus: ") and "; last: " in first
        assert question.startswith("q: ") and cue == "a: "
        assert len(prompt) < 400  # far below 256 tokens (about 4 characters a token)
    assert format_prompt("any  ptx?", State("Pneumothorax", "localize")) == (
        "focus: Pneumothorax; last: localize\nq: any ptx?\na: "
    )
    assert any(not r.item.state.first_turn for r in data.rows)
    assert any(r.item.parts == 2 for r in data.rows)


def test_labels_round_trip_and_invalid_outputs_are_refused() -> None:
    label = UnderstandingLabel(intent="localize", targets=(
        TargetLabel("side", "Effusion", True, "left"), TargetLabel("heart_size", "", False, None)))
    text = label.to_json()
    assert " " not in text.replace("heart_size", "")  # compact
    assert parse_output(text) == label
    assert parse_output(text + "<eos> trailing words") == label
    body = json.loads(text)
    for broken in (
        text[:-3],  # cut off
        json.dumps({**body, "intent": "plan_surgery"}),
        json.dumps({**body, "extra": 1}),
        json.dumps({**body, "targets": []}),
        json.dumps({**body, "targets": [{**body["targets"][0], "side": "up"}]}),
        json.dumps({**body, "targets": [{**body["targets"][0], "closed": "yes"}]}),
        json.dumps({**body, "targets": [{"kind": "side"}]}),
        "<html>",
    ):
        assert parse_output(broken) is None, broken
    assert kinds(label) == ("side", "heart_size")


def test_an_understanding_becomes_one_target_per_part() -> None:
    def part(kind: str, subject: str, side: str | None = None) -> Understanding:
        return Understanding(intent="ask_finding", confidence=1.0, slots=Slots(), method="test",
                             target=Target(kind=kind, subject=subject, closed=True,  # type: ignore[arg-type]
                                           side=side))  # type: ignore[arg-type]  # fmt: skip

    one = part("side", "Pneumothorax", "right")
    assert label_from_understanding(one).to_json() == (
        '{"intent":"ask_finding","targets":[{"kind":"side","subject":"Pneumothorax",'
        '"closed":true,"side":"right"}]}'
    )
    two = one.model_copy(update={"parts": [one, part("heart_size", "")]})
    assert kinds(label_from_understanding(two)) == ("side", "heart_size")


def test_the_hand_labelled_questions_are_valid_labels() -> None:
    cases = fresh_cases()
    assert len(cases) >= 40
    for question, _, label in cases:
        assert parse_output(label.to_json()) == label, question
    assert any(len(label.targets) == 2 for _, _, label in cases)
    assert any(not state.first_turn for _, state, _ in cases)
    # fresh questions, not exemplars the model was trained on
    exemplars = {t.lower() for texts in prompts.load("intents").values() for t in texts}
    assert not (exemplars | set(llm_data.FOLLOW_UPS)) & {q.lower() for q, _, _ in cases}


def test_vllm_serves_the_adapter_only_when_asked() -> None:
    plain = vllm_command(Path("py"), Path("/m"), 8100)
    assert "--enable-lora" not in plain
    served = vllm_command(Path("py"), Path("/m"), 8100, adapter=Path("/a"))
    assert served[: len(plain)] == plain
    assert f"{UNDERSTANDING_ADAPTER}=/a" in served and "--enable-lora" in served
