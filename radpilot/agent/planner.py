"""Planners: the interface, and the embedded (offline, deterministic) planner.

A planner sees a `TurnView` (the question as understood, the session's studies, the
evidence ledger, what this turn has produced so far) and returns a `PlanDecision`: tool calls,
a clarifying question, or "compose". The LLM planner is a second implementation of the same
interface; executor, composer and verifier are shared.
"""

from __future__ import annotations

import re
from typing import Protocol

from pydantic import BaseModel, Field

from radpilot import prompts
from radpilot.agent.types import DialogueFocus, PlanDecision, StudyRef, ToolCall, Understanding
from radpilot.core.contracts import Evidence
from radpilot.core.instructions import split_instructions

MAX_LOCALIZED_FINDINGS = 2
NO_STUDY = "no study in the session"
# Added to a management question's search, so that it retrieves what to do, not definitions.
MANAGEMENT_TERMS = "management, next steps, follow-up imaging and referral"


class ToolFailure(BaseModel):
    tool: str
    arguments: dict[str, object]
    code: str
    message: str


class TurnView(BaseModel):
    """What the planners and the composer see of a turn: the question and what it was
    understood to ask, the session's studies, the evidence, this turn's results and failures."""

    question: str
    understanding: Understanding
    studies: list[StudyRef]
    ledger: list[Evidence]
    turn_evidence: list[str] = Field(description="Ids of evidence produced or reused this turn.")
    failures: list[ToolFailure] = Field(default_factory=list)
    step: int
    available_tools: list[str]
    focus: DialogueFocus = Field(
        default_factory=DialogueFocus, description="What earlier turns were about."
    )

    @property
    def cleaned_question(self) -> str:
        """The question without instruction-like sentences (computed once, by understanding)."""
        return self.understanding.cleaned or split_instructions(self.question)[0]

    def for_part(self, part: Understanding) -> TurnView:
        """The view of one question of a multi-part message."""
        return self.model_copy(update={"understanding": part})

    def parts(self) -> list[TurnView]:
        """One view per question asked, in order."""
        return [self.for_part(p) for p in self.understanding.parts] or [self]

    def current(self) -> StudyRef | None:
        currents = [s for s in self.studies if s.role == "current"]
        return currents[-1] if currents else None

    def priors(self) -> list[StudyRef]:
        return [s for s in self.studies if s.role == "prior"]

    def turn(self, tool: str, study_id: str, **inputs: object) -> Evidence | None:
        wanted = set(self.turn_evidence)
        for evidence in self.ledger:
            if (
                evidence.id in wanted
                and evidence.tool == tool
                and evidence.inputs.get("study_id") == study_id
                and all(evidence.inputs.get(k) == v for k, v in inputs.items())
            ):
                return evidence
        return None

    def settled(self, tool: str) -> bool:
        """`tool` already ran this turn (its evidence is here, or it failed): not again."""
        wanted = set(self.turn_evidence)
        return any(e.tool == tool for e in self.ledger if e.id in wanted) or any(
            f.tool == tool for f in self.failures
        )

    def failed(self, tool: str, study_id: str) -> bool:
        return any(f.tool == tool and f.arguments.get("study_id") == study_id
                   for f in self.failures)  # fmt: skip


class Planner(Protocol):
    name: str

    def plan(self, view: TurnView) -> PlanDecision: ...


def compose(note: str = "") -> PlanDecision:
    return PlanDecision(action="compose", note=note)


# "prior study 2", "the 2024-05-10 one", "the most recent one": which of several priors is meant.
_NUMBERED_PRIOR = re.compile(r"\bprior(?: study)? (\d+)\b", re.IGNORECASE)
_LATEST = re.compile(r"\b(most recent|latest|newest|newer|last|second|later)\b", re.IGNORECASE)
_EARLIEST = re.compile(r"\b(oldest|earliest|older|first|original)\b", re.IGNORECASE)


def chosen_prior(priors: list[StudyRef], question: str) -> StudyRef | None:
    """The prior a comparison is with: the only one, else the one the question names (by
    number, date, or as the latest / earliest when all are dated); None when it is not said."""
    if len(priors) == 1:
        return priors[0]
    numbered = _NUMBERED_PRIOR.search(question)
    if numbered and 1 <= int(numbered.group(1)) <= len(priors):
        return priors[int(numbered.group(1)) - 1]
    dated = [p for p in priors if p.acquired is not None]
    named = [p for p in dated if str(p.acquired) in question]
    if len(named) == 1:
        return named[0]
    if len(dated) == len(priors):
        by_date = sorted(dated, key=lambda p: str(p.acquired))
        if _LATEST.search(question):
            return by_date[-1]
        if _EARLIEST.search(question):
            return by_date[0]
    return None


def clarification() -> str:
    """What a question not understood gets: never an open read as a fallback."""
    text: str = prompts.load("targets")["clarification"]
    return text


def plan_parts(planner: Planner, view: TurnView) -> PlanDecision:
    """Each question of a message planned in turn: the tools all of them need run together;
    a clarifying question only when no part can be answered."""
    decisions = [planner.plan(part) for part in view.parts()]
    if len(decisions) == 1:
        return decisions[0]
    calls: list[ToolCall] = []
    for decision in decisions:
        calls += [c for c in decision.calls if c not in calls]
    if calls:
        return decisions[0].model_copy(update={"action": "call_tools", "calls": calls})
    if all(d.action == "clarify" for d in decisions):
        return decisions[0]
    return compose("every part answered")


class EmbeddedPlanner:
    """Clinical protocols per intent, over whichever tools are registered."""

    name = "embedded"

    def plan(self, view: TurnView) -> PlanDecision:
        intent = view.understanding.intent
        current = view.current()
        if view.understanding.target.kind == "unclear":
            return PlanDecision(action="clarify", question=clarification(),
                                note="the question was not understood")  # fmt: skip
        # Each protocol composes when it needs a study and the session has none: whether an
        # intent needs one follows from the tools its protocol calls, not from a list.
        if intent == "image_info":
            return self._once(view, "image_info", current, "the user asks about the image")
        slots = view.understanding.slots
        if intent == "compare_prior" or (
            slots.mentions_prior and view.priors() and intent in ("ask_finding", "measure")
        ):  # "Has the effusion resolved?", "Is the heart bigger than before?" with a prior
            return self._compare(view)
        if intent == "measure":
            return self._once(view, "measure", current, "the user asks about heart size")
        if intent in ("detect_findings", "report", "ask_finding", "localize"):
            return self._findings(view)
        if intent == "guideline":
            return self._guideline(view)
        if intent == "segment_anatomy":
            return self._once(view, "segment_anatomy", current, "the user asks for the anatomy")
        if intent == "segment_region":
            return self._segment_region(view)
        if intent in ("differential", "management"):
            return self._knowledge(view)
        if intent == "similar_cases":
            return self._similar_cases(view)
        # explain, out_of_scope: no tool needed.
        return compose(f"{intent}: answered from the ledger and fixed statements")

    def _once(self, view: TurnView, tool: str, study: StudyRef | None, why: str,
              **arguments: object) -> PlanDecision:  # fmt: skip
        if study is None:
            return compose(NO_STUDY)
        if tool not in view.available_tools or view.failed(tool, study.study_id):
            return compose(f"{tool} unavailable or failed")
        if view.turn(tool, study.study_id, **arguments) is not None:
            return compose()
        call = ToolCall(tool=tool, arguments={"study_id": study.study_id, **arguments}, reason=why)
        return PlanDecision(action="call_tools", calls=[call])

    def _guideline(self, view: TurnView) -> PlanDecision:
        tool = "search_guidelines"
        if tool not in view.available_tools or view.settled(tool):
            return compose()
        findings = list(view.understanding.slots.findings)
        current = view.current()
        about_radiography = view.understanding.target.subject == "radiography"
        if not findings and current is not None and not about_radiography:
            # "What do the guidelines say about this?": about what the image shows.
            classification = self._classification(view, current)
            if classification is None and not view.failed("classify_findings", current.study_id):
                return self._once(view, "classify_findings", current,
                                  "find what the guideline question is about")  # fmt: skip
            if classification is not None:
                rows = [r for r in classification.values.get("findings", [])
                        if r["status"] == "present"]  # fmt: skip
                findings = [max(rows, key=lambda r: r["probability"])["name"]] if rows else []
        # Instruction-like sentences never reach a tool; the search takes at most 500 characters.
        query = view.cleaned_question
        if any(r.startswith("follow-up") for r in view.understanding.resolved) and (
            view.focus.questions
        ):  # "and if they're high risk?": the earlier question says about what
            query = f"{view.focus.questions[-1]} {query}"
        if findings and findings[0].replace("_", " ").lower() not in query.lower():
            query = f"{query} {findings[0].replace('_', ' ')}"  # "what next?" about the effusion
        arguments: dict[str, object] = {"query": query[:500], "k": 3}
        if len(findings) == 1:  # one finding narrows the search to its notes
            arguments["finding"] = findings[0]
        call = ToolCall(tool=tool, arguments=arguments, reason="cite what the guidelines say")
        return PlanDecision(action="call_tools", calls=[call])

    def _subject(self, view: TurnView) -> list[str] | PlanDecision:
        """The findings a question is about: named or resolved, else what the current study
        shows (classified first when needed); a decision when the classification must run."""
        findings = list(view.understanding.slots.findings)
        current = view.current()
        if findings or current is None:
            return findings
        classification = self._classification(view, current)
        if classification is None and not view.failed("classify_findings", current.study_id):
            return self._once(view, "classify_findings", current,
                              "find which finding the question is about")  # fmt: skip
        return self._most_probable(classification)

    @staticmethod
    def _most_probable(classification: Evidence | None) -> list[str]:
        rows = classification.values.get("findings", []) if classification else []
        present = [r for r in rows if r["status"] == "present"]
        return [max(present, key=lambda r: r["probability"])["name"]] if present else []

    def _knowledge(self, view: TurnView) -> PlanDecision:
        """Differential and next steps from the knowledge graph for the finding in focus; a
        management question also retrieves the management notes for it."""
        subject = self._subject(view)
        if isinstance(subject, PlanDecision):
            return subject
        subject = subject or view.focus.finding_names()  # "when should I repeat the CXR?"
        wants_notes = view.understanding.intent == "management"
        if not subject:
            return self._guideline(view) if wants_notes else compose("no finding to reason about")
        finding = subject[0]
        calls = []
        if "knowledge_graph" in view.available_tools and not view.settled("knowledge_graph"):
            calls.append(ToolCall(tool="knowledge_graph", arguments={"finding": finding},
                                  reason=f"differential and next steps for {finding}"))  # fmt: skip
        tool = "search_guidelines"
        if wants_notes and tool in view.available_tools and not view.settled(tool):
            query = f"{finding.replace('_', ' ')}: {MANAGEMENT_TERMS}"
            calls.append(ToolCall(tool=tool, arguments={"query": query, "k": 3, "finding": finding},
                                  reason=f"what the guidelines advise doing about {finding}"))
        return PlanDecision(action="call_tools", calls=calls) if calls else compose()

    def _similar_cases(self, view: TurnView) -> PlanDecision:
        tool = "similar_cases"
        if tool not in view.available_tools or view.settled(tool):
            return compose()
        arguments: dict[str, object] = {"k": 3}
        current = view.current()
        if current is not None:
            arguments["study_id"] = current.study_id
        findings = view.understanding.slots.findings
        if findings:
            arguments["text"] = ", ".join(f.replace("_", " ").lower() for f in findings)
        if len(arguments) == 1:
            return compose("nothing to find similar cases for")
        return PlanDecision(action="call_tools", calls=[
            ToolCall(tool=tool, arguments=arguments, reason="reference cases like this one")
        ])  # fmt: skip

    def _segment_region(self, view: TurnView) -> PlanDecision:
        """Segment the box in focus: this turn's localization, else the last one on this study;
        with none, localize the finding in focus first."""
        current = view.current()
        if current is None:
            return compose(NO_STUDY)
        turn = set(view.turn_evidence)
        located = [e for e in view.ledger if e.id in turn and e.tool == "localize_finding"
                   and e.values.get("regions")]  # fmt: skip
        box = None
        if located:
            box = located[-1].values["regions"][0]["box"]
        elif (
            (region := view.focus.region) is not None
            and region.study_id == current.study_id
            and (not view.understanding.slots.findings
                 or region.finding in view.understanding.slots.findings)
        ):  # fmt: skip
            box = list(region.box)  # the box in focus, unless another finding is named
        if box is None:
            subject = self._subject(view)
            if isinstance(subject, PlanDecision):
                return subject
            if not subject or view.failed("localize_finding", current.study_id):
                return compose("no region in focus to segment")
            return self._once(view, "localize_finding", current,
                              "find the region to segment", finding=subject[0])  # fmt: skip
        return self._once(view, "segment_region", current, "segment the region in focus",
                          box=[float(v) for v in box])  # fmt: skip

    def _classification(self, view: TurnView, study: StudyRef) -> Evidence | None:
        return view.turn("classify_findings", study.study_id)

    def _findings(self, view: TurnView) -> PlanDecision:
        current = view.current()
        if current is None:
            return compose(NO_STUDY)
        understanding = view.understanding
        if (
            understanding.intent == "ask_finding"
            and not understanding.slots.findings
            and understanding.slots.unsupported_findings
        ):
            return compose("only findings no model assesses were named")
        classification = self._classification(view, current)
        if classification is None:
            return self._once(view, "classify_findings", current,
                              "establish which findings are present")  # fmt: skip
        if understanding.intent == "ask_finding" and "Cardiomegaly" in understanding.slots.findings:
            # "Is the heart big?": the classifier's probability and the measured
            # cardiothoracic ratio (with its limits) answer it together.
            return self._once(view, "measure", current, "heart size is measured, not only read")
        if understanding.intent in ("ask_finding", "detect_findings", "measure"):
            return compose()  # where a finding lies is shown when asked ("where is it?")
        if "localize_finding" not in view.available_tools:
            return compose()
        calls = [
            ToolCall(
                tool="localize_finding",
                arguments={"study_id": current.study_id, "finding": finding},
                reason=f"show where the evidence for {finding} lies",
            )
            for finding in self._to_localize(view, classification)
            if view.turn("localize_finding", current.study_id, finding=finding) is None
            and not view.failed("localize_finding", current.study_id)
        ]
        if (view.understanding.target.subject == "opacity side"
                and "segment_anatomy" in view.available_tools
                and not view.settled("segment_anatomy")):  # fmt: skip
            # "which lung is whiter?": the lung masks' brightness, beside the localization
            calls.append(ToolCall(tool="segment_anatomy", arguments={"study_id": current.study_id},
                                  reason="compare the two lungs' brightness"))  # fmt: skip
        return PlanDecision(action="call_tools", calls=calls) if calls else compose()

    def _to_localize(self, view: TurnView, classification: Evidence) -> list[str]:
        rows = {row["name"]: row for row in classification.values.get("findings", [])}
        named = [f for f in view.understanding.slots.findings if f in rows]
        if view.understanding.intent == "localize" and named:
            return named[:MAX_LOCALIZED_FINDINGS]
        # A named finding is shown even when indeterminate, and so is the most probable one
        # when the question asks which side is abnormal; an overview shows what is present.
        which_side = view.understanding.target.subject == "opacity side"
        wanted = ("present", "indeterminate") if named or which_side else ("present",)
        candidates = named or list(rows)
        positive = [f for f in candidates if rows[f]["status"] in wanted]
        positive.sort(key=lambda f: -rows[f]["probability"])
        return positive[:1] if which_side else positive[:MAX_LOCALIZED_FINDINGS]

    def _compare(self, view: TurnView) -> PlanDecision:
        current, priors = view.current(), view.priors()
        if current is None:
            return compose(NO_STUDY)
        if not priors:
            if view.understanding.slots.findings:
                # "Is the effusion worse than last time?" with no prior: answer about the
                # current study; the composer says that no comparison is possible.
                return self._findings(view)
            return compose("no prior study: never invent one")
        chosen = chosen_prior(priors, view.understanding.cleaned)
        if chosen is None:
            listing = "; ".join(
                f"{p.label or p.study_id} ({p.acquired or 'date unknown'})" for p in priors
            )
            return PlanDecision(
                action="clarify",
                question=f"There are {len(priors)} prior studies in this session: {listing}. "
                "Which one should I compare with?",
            )
        prior = chosen
        if "compare_studies" in view.available_tools:
            decision = self._once(view, "compare_studies", current, "temporal comparison",
                                  prior_id=prior.study_id)  # fmt: skip
            if (decision.action == "call_tools" and self._classification(view, current) is None
                    and "classify_findings" in view.available_tools
                    and not view.failed("classify_findings", current.study_id)):  # fmt: skip
                # The current study is read too: "still there?" is answered from it first.
                decision.calls.insert(0, ToolCall(
                    tool="classify_findings", arguments={"study_id": current.study_id},
                    reason="the findings on the current study"))  # fmt: skip
            return decision
        for study in (current, prior):
            if self._classification(view, study) is None and not view.failed(
                "classify_findings", study.study_id
            ):
                return self._once(view, "classify_findings", study,
                                  f"findings on the {study.role} study")  # fmt: skip
        return compose()
