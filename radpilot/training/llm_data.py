"""Training data for the local LLM's *understanding* of a turn (issue #34, item 2).

Every question comes from the project's own phrasings, never from an evaluation set:
`prompts/intents.yaml` (the exemplars of each intent), `prompts/targets.yaml` (the vocabularies:
unsupported categories, identity, attributes, clinical decisions, knowledge, off-topic words,
abbreviations) and `prompts/findings.yaml` (finding synonyms), composed into short templated
questions, some after a line of clinical context, some joined into two-part messages. Each is
asked with or without a dialogue state (the finding in focus and the last intent).

Labels come from a *teacher*, a function of (question, state) -> `UnderstandingLabel`; the
recipe (`finetune_llm.py`) uses the embedded recognizer (`IntentRecognizer.understand`), so
the model learns the product's own reading of a question, in a compact JSON:

    {"intent":"ask_finding","targets":[{"kind":"finding","subject":"Effusion","closed":true,"side":"left"}]}

The held-out split is by *group* (one exemplar, or one template), never by row: a held-out
template's fillings and an exemplar's state variants are all held out, and two-part messages
are joined within one split only. Everything here is deterministic for a given seed and
imports neither torch nor the agent, so the unit tests exercise it without weights.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from radpilot import prompts

INTENTS = (
    "detect_findings", "ask_finding", "localize", "measure", "compare_prior", "guideline",
    "management", "differential", "similar_cases", "segment_anatomy", "segment_region",
    "explain", "report", "image_info", "out_of_scope",
)  # fmt: skip  (radpilot.agent.types.Intent; a unit test keeps the two equal)
TARGET_KINDS = (
    "finding", "heart_size", "side", "anatomy", "attribute", "normality", "change", "knowledge",
    "unsupported", "out_of_scope", "identity", "read", "unclear",
)  # fmt: skip  (radpilot.agent.types.TargetKind)
SIDES = ("left", "right", "bilateral")
HELD_OUT = 0.15
MAX_PROMPT_TOKENS = 256  # the budget for state + question; the prompts here are ~25


@dataclass(frozen=True)
class State:
    """The dialogue state the model sees: the finding in focus and the last intent."""

    finding: str | None = None
    intent: str | None = None

    @property
    def first_turn(self) -> bool:
        return self.finding is None and self.intent is None

    def line(self) -> str:
        return f"focus: {self.finding or 'none'}; last: {self.intent or 'none'}"


@dataclass(frozen=True)
class TargetLabel:
    kind: str
    subject: str = ""
    closed: bool = False
    side: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "subject": self.subject, "closed": self.closed,
                "side": self.side}  # fmt: skip


@dataclass(frozen=True)
class UnderstandingLabel:
    intent: str
    targets: tuple[TargetLabel, ...]

    def to_json(self) -> str:
        body = {"intent": self.intent, "targets": [t.as_dict() for t in self.targets]}
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class Item:
    """One question with its state, the group its split is decided by, and where it came from."""

    question: str
    state: State
    group: str
    source: str
    parts: int = 1


@dataclass
class Row:
    item: Item
    label: UnderstandingLabel
    split: str = "train"

    def prompt(self) -> str:
        return format_prompt(self.item.question, self.item.state)

    def completion(self) -> str:
        return self.label.to_json()

    def as_dict(self) -> dict[str, Any]:
        return {"prompt": self.prompt(), "completion": self.completion(),
                "group": self.item.group, "source": self.item.source, "split": self.split,
                "parts": self.item.parts}  # fmt: skip


Teacher = Callable[[str, State], UnderstandingLabel]


def format_prompt(question: str, state: State) -> str:
    """The model's whole input: one line of state, the question, and the answer cue."""
    question = " ".join(question.split())
    return f"{state.line()}\nq: {question}\na: "


# ---------------------------------------------------------------------------------------
# Parsing and schema: what the model must produce, checked without any model.

JSON_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "intent": {"type": "string", "enum": list(INTENTS)},
        "targets": {
            "type": "array", "minItems": 1, "maxItems": 4,
            "items": {
                "type": "object",
                "properties": {
                    "kind": {"type": "string", "enum": list(TARGET_KINDS)},
                    "subject": {"type": "string", "maxLength": 60},
                    "closed": {"type": "boolean"},
                    "side": {"enum": [*SIDES, None]},
                },
                "required": ["kind", "subject", "closed", "side"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["intent", "targets"],
    "additionalProperties": False,
}  # fmt: skip


def parse_output(text: str) -> UnderstandingLabel | None:
    """The label a model wrote, or None when it is not valid JSON of the schema above."""
    text = text.strip()
    end = text.find("}]}")
    if end >= 0:
        text = text[: end + 3]
    try:
        body = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(body, dict) or set(body) != {"intent", "targets"}:
        return None
    intent, targets = body["intent"], body["targets"]
    if intent not in INTENTS or not isinstance(targets, list) or not 1 <= len(targets) <= 4:
        return None
    parsed: list[TargetLabel] = []
    for target in targets:
        if not isinstance(target, dict) or set(target) != {"kind", "subject", "closed", "side"}:
            return None
        kind, subject, closed, side = (target["kind"], target["subject"], target["closed"],
                                       target["side"])  # fmt: skip
        if (kind not in TARGET_KINDS or not isinstance(subject, str)
                or not isinstance(closed, bool) or side not in (*SIDES, None)):  # fmt: skip
            return None
        parsed.append(TargetLabel(kind=kind, subject=subject, closed=closed, side=side))
    return UnderstandingLabel(intent=intent, targets=tuple(parsed))


# ---------------------------------------------------------------------------------------
# Questions composed from the project's phrasings.

# Clinical context written before a question, in clinicians' shorthand (the templates' own).
CONTEXTS = (
    "58F SOB.", "72M, fever and cough x3 days.", "post-op day 2, desaturating.",
    "known COPD, worse today.", "ED referral, chest pain.", "pt on ITU, ventilated.",
    "65M smoker, weight loss.", "8 yo, cough and fever.", "reduced breath sounds R base.",
    "crackles L base.", "new O2 requirement.", "known CCF.", "fall, chest wall pain.",
)  # fmt: skip

FINDING_TEMPLATES = (
    "any {f}?", "{f}?", "?{f}", "is there {a} {f}?", "r/o {f}", "rule out {f} pls",
    "any sign of {f}", "could this be {f}?", "is that {f}?", "{ctx} {f}?", "{ctx} any {f}?",
    "is there {a} {f} on the {side}?", "{side} sided {f}?", "any {f} on the {side}",
    "where is the {f}?", "which side is the {f} on?", "show me the {f}",
    "is the {f} worse than on the prior?", "has the {f} changed since last film?",
    "is the {f} new?", "how big is the {f}?", "outline the {f}", "what causes {f}?",
    "ddx for {f}?", "how should we manage the {f}?", "similar cases of {f}?",
    "no {f}, right?", "what does the guideline say about {f}?", "explain why you think {f}",
)  # fmt: skip
UNSUPPORTED_TEMPLATES = (
    "is the {u} ok?", "any {u}?", "{u}?", "comment on the {u}", "{ctx} {u}?",
    "what about the {u}?", "is there any {u} on the {side}?",
)  # fmt: skip
IDENTITY_TEMPLATES = ("{i}?", "what's the {i}", "can you tell me the {i}", "pls give {i}",
                      "{ctx} what is the {i}?")  # fmt: skip
ATTRIBUTE_TEMPLATES = ("{p}?", "quick q, {p}?", "{ctx} {p}?")
DECISION_TEMPLATES = ("{d}?", "{ctx} {d}?", "given the film, {d}?")
KNOWLEDGE_TEMPLATES = ("{k}?", "quick question: {k}?", "in general, {k}?")
OFF_TOPIC_TEMPLATES = ("{o}?", "any good {o} nearby?", "what do you think about {o}?")
# Follow-ups that lean on the dialogue state ("where is it?" means the finding in focus).
FOLLOW_UPS = (
    "where is it?", "is it new?", "how big is it?", "which side?", "is it worse?",
    "and on the left?", "and the right?", "what about the heart?", "could it be something else?",
    "what should we do about it?", "outline it", "any others?", "is it still there?",
    "what's the ddx?", "show me", "how sure are you?", "and pneumonia?", "and effusion?",
)  # fmt: skip
JOINERS = ("{a} {b}", "{a} and {b}", "{a} also {b}", "{a}. {b}")


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def _finding_words(table: dict[str, list[str]]) -> list[tuple[str, str]]:
    """(canonical finding, a phrase naming it), one row per synonym."""
    return [(finding, phrase) for finding, phrases in table.items() for phrase in phrases]


def _fill(template: str, rng: random.Random, **slots: str) -> str:
    values = dict(slots)
    values.setdefault("ctx", rng.choice(CONTEXTS))
    values.setdefault("side", rng.choice(("left", "right", "L", "R")))
    if "{a}" in template:
        values["a"] = _article(values.get("f", "x"))
    return " ".join(template.format(**values).split())


def _states(rng: random.Random, findings: list[str], share: float) -> list[State]:
    """The first-turn state, and with probability `share` one state with a focus."""
    states = [State()]
    if rng.random() < share:
        finding = rng.choice([*findings, None])
        intent = rng.choice(["ask_finding", "localize", "detect_findings", "compare_prior",
                             "measure", "management"])  # fmt: skip
        states.append(State(finding=finding, intent=intent))
    return states


def compose_items(seed: int = 0, *, per_template: int = 12, state_share: float = 0.35,
                  vocab: dict[str, Any] | None = None) -> list[Item]:  # fmt: skip
    """The single-question items, deterministic for a seed. `vocab` (for tests) replaces the
    three prompt files: keys `intents`, `targets`, `findings`."""
    rng = random.Random(seed)
    vocab = vocab or {name: prompts.load(name) for name in ("intents", "targets", "findings")}
    intents: dict[str, list[str]] = vocab["intents"]
    targets: dict[str, Any] = vocab["targets"]
    findings: dict[str, list[str]] = vocab["findings"]
    names = sorted(findings)
    words = _finding_words(findings)
    items: list[Item] = []

    def add(question: str, group: str, source: str, share: float = state_share) -> None:
        for state in _states(rng, names, share):
            items.append(Item(question=question, state=state, group=group, source=source))

    for intent, exemplars in intents.items():
        for number, text in enumerate(exemplars):
            add(text, f"exemplar:{intent}:{number}", "intents.yaml")
    for number, template in enumerate(FINDING_TEMPLATES):
        for _, phrase in rng.sample(words, min(per_template, len(words))):
            add(_fill(template, rng, f=phrase), f"finding:{number}", "findings.yaml")
    unsupported = [w for ws in targets.get("unsupported", {}).values() for w in ws]
    for number, template in enumerate(UNSUPPORTED_TEMPLATES):
        for word in rng.sample(unsupported, min(per_template, len(unsupported))):
            add(_fill(template, rng, u=word), f"unsupported:{number}", "targets.yaml")
    identity = list(targets.get("identity", []))
    for number, template in enumerate(IDENTITY_TEMPLATES):
        for word in rng.sample(identity, min(per_template // 2, len(identity))):
            add(_fill(template, rng, i=word), f"identity:{number}", "targets.yaml", 0.2)
    attributes = [w for ws in targets.get("attributes", {}).values() for w in ws]
    for number, template in enumerate(ATTRIBUTE_TEMPLATES):
        for word in rng.sample(attributes, min(per_template, len(attributes))):
            add(_fill(template, rng, p=word), f"attribute:{number}", "targets.yaml", 0.2)
    decisions = list(targets.get("clinical_decisions", []))
    for number, template in enumerate(DECISION_TEMPLATES):
        for word in rng.sample(decisions, min(per_template, len(decisions))):
            add(_fill(template, rng, d=word), f"decision:{number}", "targets.yaml", 0.5)
    knowledge = list(targets.get("knowledge", []))
    for number, template in enumerate(KNOWLEDGE_TEMPLATES):
        for word in rng.sample(knowledge, min(per_template, len(knowledge))):
            add(_fill(template, rng, k=word), f"knowledge:{number}", "targets.yaml", 0.2)
    off_topic = list(targets.get("off_topic", []))
    for number, template in enumerate(OFF_TOPIC_TEMPLATES):
        for word in rng.sample(off_topic, min(per_template // 2, len(off_topic))):
            add(_fill(template, rng, o=word), f"off_topic:{number}", "targets.yaml", 0.2)
    for number, text in enumerate(FOLLOW_UPS):  # always asked with a finding in focus
        for _ in range(3):
            state = State(finding=rng.choice(names),
                          intent=rng.choice(["ask_finding", "localize", "detect_findings"]))
            items.append(Item(question=text, state=state, group=f"follow_up:{number}",
                              source="follow-up template"))  # fmt: skip
    return items


def held_out_groups(items: Iterable[Item], seed: int = 0, share: float = HELD_OUT) -> set[str]:
    """`share` of the groups of each source family, chosen by a seeded hash (stable when other
    families grow)."""
    families: dict[str, list[str]] = {}
    for item in items:
        # an exemplar's family is its intent; a template's, its kind of template
        family = ":".join(item.group.split(":")[:2 if item.group.startswith("exemplar:") else 1])
        members = families.setdefault(family, [])
        if item.group not in members:
            members.append(item.group)
    chosen: set[str] = set()
    for groups in families.values():
        ranked = sorted(groups, key=lambda g: hashlib.sha256(f"{seed}:{g}".encode()).hexdigest())
        count = max(1, round(share * len(groups))) if len(groups) > 1 else 0
        chosen.update(ranked[:count])
    return chosen


def two_part_items(singles: list[Item], count: int, seed: int) -> list[Item]:
    """Two first-turn questions joined into one message, both from the given (same-split)
    items; their group names both."""
    rng = random.Random(seed)
    first_turn = [i for i in singles if i.state.first_turn and "?" in i.question
                  and len(i.question) < 70]  # fmt: skip
    joined: list[Item] = []
    for _ in range(count if len(first_turn) > 1 else 0):
        a, b = rng.sample(first_turn, 2)
        b_text = b.question[:1].lower() + b.question[1:] if rng.random() < 0.5 else b.question
        text = rng.choice(JOINERS).format(a=a.question.rstrip(), b=b_text)
        text = re.sub(r"\?\.", "?", text)
        joined.append(Item(question=text, state=State(), group=f"pair:{a.group}|{b.group}",
                           source="two-part", parts=2))  # fmt: skip
    return joined


@dataclass
class Dataset:
    rows: list[Row]
    seed: int
    stats: dict[str, Any] = field(default_factory=dict)

    def split(self, name: str) -> list[Row]:
        return [r for r in self.rows if r.split == name]


def build_dataset(teacher: Teacher, seed: int = 0, *, per_template: int = 12,
                  pair_share: float = 0.12, vocab: dict[str, Any] | None = None,
                  progress: Callable[[str], None] | None = None) -> Dataset:  # fmt: skip
    """Compose the items, split them by group, add two-part messages within each split, and
    label every item with the teacher. Deterministic for a seed and a deterministic teacher."""
    singles = compose_items(seed, per_template=per_template, vocab=vocab)
    held = held_out_groups(singles, seed)
    by_split = {"train": [i for i in singles if i.group not in held],
                "held_out": [i for i in singles if i.group in held]}  # fmt: skip
    rows: list[Row] = []
    for offset, (split, items) in enumerate(by_split.items()):
        pairs = two_part_items(items, round(pair_share * len(items)), seed + 1 + offset)
        for number, item in enumerate([*items, *pairs]):
            rows.append(Row(item=item, label=teacher(item.question, item.state), split=split))
            if progress and number and number % 500 == 0:
                progress(f"labelled {number}/{len(items) + len(pairs)} {split} questions")
    rng = random.Random(seed)
    rng.shuffle(rows)
    stats = {
        "rows": len(rows),
        "train": sum(r.split == "train" for r in rows),
        "held_out": sum(r.split == "held_out" for r in rows),
        "groups_held_out": len(held),
        "two_part": sum(r.item.parts == 2 for r in rows),
        "with_state": sum(not r.item.state.first_turn for r in rows),
    }
    return Dataset(rows=rows, seed=seed, stats=stats)


def label_from_understanding(understanding: Any) -> UnderstandingLabel:
    """An `Understanding` (radpilot.agent.types) as the compact label: its intent and one
    target per question part."""
    parts = understanding.parts or [understanding]
    targets = []
    for part in parts:
        target = part.target
        targets.append(TargetLabel(kind=target.kind, subject=target.subject or "",
                                   closed=bool(target.closed), side=target.side))  # fmt: skip
    return UnderstandingLabel(intent=understanding.intent, targets=tuple(targets[:4]))
