"""Dialogue memory: what the conversation is about, and what a reference in a question means.

`resolve` rewrites a turn's understanding against the `DialogueFocus` of earlier turns:
pronouns and ellipsis ("where is it?", "is it new?", "what should we do about that?"),
follow-ups that change one thing ("and on the left?", "and pneumonia?", "what about the
heart?") and corrections ("no, I meant the nodule"). `advance` updates the focus once a turn
has been answered. Both are pure functions of their inputs, so the embedded planner stays
deterministic for a given state; the trace records every resolution (`Understanding.resolved`).
"""

from __future__ import annotations

import re

from radpilot.agent.types import (
    Answer,
    DialogueFocus,
    FocusFinding,
    FocusRegion,
    Intent,
    Understanding,
)
from radpilot.core.contracts import Evidence

RECENT_QUESTIONS = 6  # the focus keeps this many questions (the LLM planner's history)
EVIDENCE_PER_FINDING = 5  # the focus keeps this many evidence ids per finding
HISTORY_CHARS = 1200  # about 300 tokens: the LLM planner's history budget
# Intents whose subject is a finding: with none named, the finding in focus is meant.
ABOUT_A_FINDING: set[Intent] = {"ask_finding", "localize", "compare_prior", "management",
                                "differential", "similar_cases", "guideline"}  # fmt: skip
# Intents a bare follow-up ("and on the left?", "and pneumonia?") repeats.
REPEATABLE: set[Intent] = {"ask_finding", "localize", "compare_prior", "management",
                           "differential", "measure", "segment_region", "guideline"}  # fmt: skip

_PLURAL = re.compile(r"\b(them|they|these|those|both)\b", re.I)
_REFERENCE = re.compile(
    r"\b(it|its|it's|that|this|them|they|these|those|same|the (finding|abnormality|lesion|"
    r"opacity|one|thing|problem|change))\b",
    re.I,
)
_CORRECTION = re.compile(
    r"\b(i meant|i mean|i was asking about|i was asking|typo|wrong one)\b|^\s*actually,? the\b",
    re.I,
)
# "Has anything changed?", "anything else?": about everything, not the finding in focus.
_EVERYTHING = re.compile(r"\b(anything|everything|any other|all the|overall)\b", re.I)
_SHOW = re.compile(r"^\s*(ok,? |so,? |can you |could you |please )?(show me|show it|pinpoint|"
                   r"point (to )?it|point it out|highlight it|locali[sz]e it|mark it|"
                   r"which (lung|side|lobe|zone)|what (side|lobe|zone)|where|"
                   r"(confirm )?(the )?side|"
                   r"(right|left)( (upper|middle|lower) lobe)? or (the )?(right|left))\b",
                   re.I)  # fmt: skip
_FOLLOW_UP = re.compile(r"^\s*(and|what about|how about|also|plus|same for|and what about)\b", re.I)
# "what if it's part-solid?", "when can they fly afterwards?": the same topic, one thing changed
_WHAT_IF = re.compile(r"^\s*(and\s+)?(what if|if|when|how long|how soon|in a|for a|does that|"
                      r"is that|should (she|he|they)|can (she|he|they))\b", re.I)  # fmt: skip
_COMPARATIVE = re.compile(r"^\s*(and\s+|so\s+|is it\s+|has it\s+(got\s+)?)?(any\s+)?(smaller|"
                          r"bigger|larger|worse|better|improved|resolved|gone|same|unchanged|"
                          r"changed|grown|shrunk)\b[\s?.!]*$", re.I)  # fmt: skip
_HEART = re.compile(r"\b(heart|cardiac)\b", re.I)
_ASKS_PRESENCE = re.compile(r"\b(any|is there|are there)\b", re.I)
_NOT_A_PLACE = re.compile(r"\b(cases?|similar|examples?|comparable|evidence|why|report)\b", re.I)
_SIDE_ONLY = re.compile(r"^\s*(and\s+)?(on\s+|what about\s+|how about\s+)?the (left|right)"
                        r"( side| lung)?\s*\??\s*$", re.I)  # fmt: skip


def _short(question: str) -> bool:
    return len(question.split()) <= 8  # "right lower lobe or left lower lobe?" (RLL or LLL)


def sentences(text: str) -> list[str]:
    """The sentences (or ;-separated clauses) of a question, each with its end mark."""
    return [part.strip() for part in re.findall(r"[^.!?;]+[.!?;]*", text) if part.strip()]


def _last_sentence(text: str) -> str:
    parts = sentences(text)
    return parts[-1] if parts else text


def resolve(understanding: Understanding, focus: DialogueFocus) -> Understanding:
    """The understanding with its references resolved against the focus."""
    whole = understanding.cleaned
    question = _last_sentence(whole) if len(whole.split()) > 3 else whole
    slots = understanding.slots
    intent = understanding.intent
    resolved: list[str] = []
    if not question or intent == "out_of_scope" and not (
        focus.intent == "guideline" and _WHAT_IF.search(question)
    ):  # "when can they fly afterwards?" continues a guideline thread (decisions stay refused)
        return understanding
    focus_findings = focus.finding_names()
    findings = list(slots.findings)
    corrects = _CORRECTION.search(whole) or slots.excluded
    if corrects and findings and focus.intent in REPEATABLE:
        # The earlier kind of question, unless this one asks another kind ("I meant the nodule:
        # what's the differential?"); a measurement takes no finding, so it becomes a question.
        if intent in ("ask_finding", "detect_findings", "localize"):
            intent = "ask_finding" if focus.intent == "measure" else focus.intent
        resolved.append(f"correction: {', '.join(findings)} instead of "
                        f"{', '.join(focus_findings) or 'the earlier subject'}")  # fmt: skip
    elif _FOLLOW_UP.search(question) and _short(question) and focus.intent in REPEATABLE:
        if findings and intent not in ("compare_prior", "management", "differential") and not (
            _ASKS_PRESENCE.search(question)
        ):
            intent = "ask_finding" if focus.intent == "measure" else focus.intent
            resolved.append(f"follow-up: {focus.intent} for {', '.join(findings)}")
        elif not findings and _HEART.search(question):
            intent = "measure" if focus.intent == "measure" else "ask_finding"
            findings = [] if intent == "measure" else ["Cardiomegaly"]
            resolved.append("the heart -> " + ("a measurement" if findings == [] else
                                                "Cardiomegaly"))  # fmt: skip
        elif not findings and focus.intent == "guideline":
            intent = "guideline"
            resolved.append("follow-up: the same guideline question")
        elif not findings and slots.laterality is not None:
            intent = focus.intent
            findings = focus_findings[:2]
            resolved.append(f"the {slots.laterality} side -> {focus.intent} for "
                            f"{', '.join(findings) or 'the image'}")  # fmt: skip
    elif (focus_findings and not _NOT_A_PLACE.search(whole)
          and intent in ("ask_finding", "detect_findings", "explain", "image_info", "localize",
                         "segment_anatomy")
          and any(_SHOW.search(part) and _short(part) for part in sentences(whole))):  # fmt: skip
        intent = "localize"
        resolved.append("show it -> localize")
    elif (focus.intent == "guideline" and not findings and slots.laterality is None
          and intent not in ("guideline", "management", "differential", "compare_prior")
          and _WHAT_IF.search(question) and len(question.split()) <= 10):  # fmt: skip
        intent = "guideline"  # "does that hold for AP films too?"
        resolved.append("follow-up: the same guideline question")
    elif _COMPARATIVE.search(question) and not findings and focus.intent == "compare_prior":
        intent = "compare_prior"  # "smaller?" after a comparison: the same comparison
        findings = focus_findings[:1]
        resolved.append(f"follow-up: the comparison for {', '.join(findings) or 'the image'}")
    elif _SIDE_ONLY.search(question) and focus.intent in REPEATABLE:
        intent = focus.intent
        findings = focus_findings[:2]
        resolved.append(f"the {slots.laterality} side -> {focus.intent}")
    if intent == "report" and not findings and focus_findings:
        findings = focus_findings[:3]  # a report covers what the conversation discussed
        resolved.append(f"the report covers {', '.join(findings)}")
    elif not findings and focus_findings and intent in ABOUT_A_FINDING:
        wanted = focus_findings if _PLURAL.search(question) else focus_findings[:1]
        if (_REFERENCE.search(question) or _short(question)) and not _EVERYTHING.search(question):
            findings = wanted[:2]
            word = m.group(0) if (m := _REFERENCE.search(question)) else "(implied)"
            resolved.append(f"{word.lower()} -> {', '.join(findings)}")
    if intent == "ask_finding" and not findings and not slots.unsupported_findings:
        intent = "detect_findings"
    if not resolved and intent == understanding.intent:
        return understanding
    return understanding.model_copy(
        update={
            "intent": intent,
            "slots": slots.model_copy(update={"findings": findings}),
            "resolved": resolved,
            "method": understanding.method + (f"; dialogue: {'; '.join(resolved)}"
                                              if resolved else ""),
        }  # fmt: skip
    )


def _answered(understanding: Understanding, answer: Answer, turn: list[Evidence]) -> list[str]:
    """The findings this turn was about: those named (or resolved), else for an open read the
    findings it called present or possible, most probable first."""
    named = list(understanding.slots.findings)
    if named:
        return named
    if understanding.intent == "measure":  # heart-size questions are about cardiomegaly
        return ["Cardiomegaly"]
    if understanding.intent in ("detect_findings", "report"):
        rows = sorted(answer.findings, key=lambda r: -(r.probability or 0))
        return [r.name for r in rows if r.status != "absent"][:3]
    located = [str(e.values["finding"]) for e in turn if e.tool == "localize_finding"]
    return located[:1]


def advance(
    focus: DialogueFocus,
    understanding: Understanding,
    answer: Answer,
    turn: list[Evidence],
    current_study: str | None,
) -> DialogueFocus:
    """The focus after a turn: unchanged where the turn was not about a subject."""
    questions = [*focus.questions, understanding.cleaned][-RECENT_QUESTIONS:]
    if understanding.intent in ("out_of_scope", "explain", "image_info"):
        return focus.model_copy(update={"questions": questions})
    cited: dict[str, list[str]] = {}
    for claim in answer.claims:
        for finding in _named_in(claim.text, answer):
            cited.setdefault(finding, []).extend(claim.evidence)
    names = _answered(understanding, answer, turn) or focus.finding_names()
    earlier = {f.name: f.evidence for f in focus.findings}

    def evidence_for(name: str) -> list[str]:
        """The evidence that answered it, this turn's and earlier (the latest few)."""
        ids = set(cited.get(name, [])) | set(earlier.get(name, []))
        return sorted(ids, key=lambda i: int(i[1:]))[-EVIDENCE_PER_FINDING:]

    findings = [FocusFinding(name=n, evidence=evidence_for(n)) for n in names]
    region = focus.region
    for evidence in turn:
        regions = evidence.values.get("regions") if evidence.tool == "localize_finding" else None
        if regions:
            top = regions[0]
            region = FocusRegion(
                study_id=str(evidence.inputs.get("study_id")),
                finding=str(evidence.values.get("finding")),
                box=tuple(top["box"]),
                side=str(top.get("side", "")),
                evidence=evidence.id,
            )
            if region.finding in names:
                break
    return DialogueFocus(
        findings=findings,
        study_id=current_study,
        region=region,
        intent=understanding.intent,
        laterality=understanding.slots.laterality or focus.laterality,
        questions=questions,
    )


def _named_in(text: str, answer: Answer) -> list[str]:
    lowered = text.lower()
    return [row.name for row in answer.findings if row.name.lower().replace("_", " ") in lowered]


def history(focus: DialogueFocus, limit: int = HISTORY_CHARS) -> str:
    """A compact account of the conversation so far for the LLM planner, within `limit`
    characters: the findings discussed with their evidence ids, the last box, the earlier
    questions (newest kept first when the budget runs out)."""
    parts = []
    if focus.findings:
        parts.append("Findings discussed: " + "; ".join(
            f"{f.name} ({', '.join(f.evidence) or 'no evidence yet'})" for f in focus.findings
        ))  # fmt: skip
    if focus.region is not None:
        r = focus.region
        box = ", ".join(f"{v:.0f}" for v in r.box)
        parts.append(f"Last box: {r.finding} on {r.study_id} [{box}] ({r.side}, {r.evidence})")
    if focus.intent is not None:
        parts.append(f"Last question type: {focus.intent}")
    head = "\n".join(parts)
    questions: list[str] = []
    used = len(head)
    for question in reversed(focus.questions):
        line = f"- {question[:200]}"
        if used + len(line) + 1 > limit:
            break
        questions.insert(0, line)
        used += len(line) + 1
    if questions:
        head += ("\n" if head else "") + "Earlier questions:\n" + "\n".join(questions)
    return head[:limit] or "none (first question)"
