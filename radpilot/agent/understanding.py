"""Understanding a question: intent (MiniLM embeddings against exemplars, then rules) and
slots (findings and their synonyms, laterality, prior reference, report format).

Deterministic for a given question and exemplar set. Text inside the question can only ever
select one of the fixed intents; it never names tools or arguments directly.
"""

from __future__ import annotations

import re
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from radpilot import prompts
from radpilot.agent.injection import split_instructions
from radpilot.agent.types import Intent, Slots, Understanding

if TYPE_CHECKING:
    from radpilot.knowledge.embedding import SentenceEmbedder

_STUDY = r"(film|study|studies|x-?rays?|image|images|exam|radiograph|one)"
_PRIOR = re.compile(
    rf"\b(prior|(previous|earlier|old|older|last) {_STUDY}|last (week|month|year|time)|"
    r"interval|changed?|compared?|comparison|since|progress(ed|ion)?|better|worse|resolved|"
    r"improv(ed|ing))\b",
    re.IGNORECASE,
)
_EXPLICIT_PRIOR = re.compile(
    rf"\b(prior|(previous|earlier|old|older|last) {_STUDY}|compar\w*|last (week|month|year)|"
    r"interval|since)\b",
    re.IGNORECASE,
)
_WHERE = re.compile(r"\b(where|which side|locali[sz]e|show me|point|highlight)\b", re.IGNORECASE)
_MEASURE = re.compile(
    r"\b(measure|ratio|ctr|how (big|large)|size of|area|diameter|cm|mm)\b", re.IGNORECASE
)
_GUIDELINE = re.compile(
    r"\b(guidelines?|guidance|manag(e|ed|es|ing|ement)|recommend(ed|ation|ations)?|follow-?up|"
    r"next steps?|"
    r"BTS|Fleischner|NICE|ESC|ATS|IDSA|differential|"
    # general knowledge: tests, criteria and definitions are answered from the notes
    r"CT|HRCT|ultrasound|echocardiograph\w*|bronchoscopy|criteria|indicated|indications?|"
    r"definition|define|signs? of|"
    # normative questions ("where should the tube tip be?") are answered from the notes
    r"(where|how|when) should)\b",
    re.IGNORECASE,
)
_STRONG_MEASURE = re.compile(r"\b(ctr|cardiothoracic|measure\w*)\b", re.IGNORECASE)
_REPORT = re.compile(r"\b(report|impression)\b", re.IGNORECASE)
_FHIR = re.compile(r"\bfhir\b", re.IGNORECASE)
_LEFT = re.compile(r"\bleft\b", re.IGNORECASE)
_RIGHT = re.compile(r"\bright\b", re.IGNORECASE)
_BILATERAL = re.compile(r"\b(bilateral|both sides|both lungs)\b", re.IGNORECASE)


def _phrase_pattern(phrases: list[str]) -> re.Pattern[str]:
    ordered = sorted(phrases, key=len, reverse=True)  # longer phrases win
    return re.compile(r"\b(" + "|".join(re.escape(p) for p in ordered) + r")\b", re.IGNORECASE)


class Vocabulary:
    """Finding names and their synonyms (prompts/findings.yaml)."""

    def __init__(self) -> None:
        table: dict[str, list[str]] = dict(prompts.load("findings"))  # load() is cached
        self.unsupported = table.pop("_unsupported")
        self.canonical = {p.lower(): f for f, phrases in table.items() for p in [f, *phrases]}
        self._pattern = _phrase_pattern(list(self.canonical))
        self._unsupported = _phrase_pattern(self.unsupported)

    def findings_in(self, text: str) -> list[str]:
        found: list[str] = []
        for match in self._pattern.finditer(text.replace("_", " ")):
            finding = self.canonical[match.group(0).lower()]
            if finding not in found:
                found.append(finding)
        return found

    def unsupported_in(self, text: str) -> list[str]:
        return sorted({m.group(0).lower() for m in self._unsupported.finditer(text)})


def extract_slots(text: str, vocabulary: Vocabulary) -> Slots:
    left, right = bool(_LEFT.search(text)), bool(_RIGHT.search(text))
    laterality = None
    if _BILATERAL.search(text) or (left and right):
        laterality = "bilateral"
    elif left:
        laterality = "left"
    elif right:
        laterality = "right"
    return Slots(
        findings=vocabulary.findings_in(text),
        unsupported_findings=vocabulary.unsupported_in(text),
        laterality=laterality,  # type: ignore[arg-type]
        mentions_prior=bool(_PRIOR.search(text)),
        report_format="fhir" if _FHIR.search(text) else None,
    )


class IntentRecognizer:
    def __init__(self, embedder: SentenceEmbedder) -> None:
        self.embedder = embedder
        self.vocabulary = Vocabulary()
        exemplars: dict[str, list[str]] = prompts.load("intents")
        self._labels = [intent for intent, texts in exemplars.items() for _ in texts]
        self._texts = [text for texts in exemplars.values() for text in texts]

    @cached_property
    def _exemplar_vectors(self) -> np.ndarray:
        return self.embedder.embed(self._texts)

    def understand(self, question: str) -> Understanding:
        question, ignored = split_instructions(question)
        if not question:
            return Understanding(
                intent="out_of_scope", confidence=1.0, slots=Slots(),
                method="only instructions to the system, no question", ignored=ignored,
            )  # fmt: skip
        slots = extract_slots(question, self.vocabulary)
        scores = self._exemplar_vectors @ self.embedder.embed([question])[0]
        by_intent: dict[str, float] = {}
        for label, score in zip(self._labels, scores, strict=True):
            by_intent[label] = max(by_intent.get(label, -1.0), float(score))
        ranked = sorted(by_intent.items(), key=lambda item: -item[1])
        intent, confidence = ranked[0]
        refined, rule = refine(intent, question, slots)  # type: ignore[arg-type]
        return Understanding(
            intent=refined,
            confidence=round(confidence, 3),
            slots=slots,
            method=f"embedding ({intent} {confidence:.2f})" + (f"; rule: {rule}" if rule else ""),
            ignored=ignored,
        )


def refine(intent: Intent, question: str, slots: Slots) -> tuple[Intent, str]:
    """Rules that correct the nearest-exemplar intent where wording is decisive."""
    if intent in ("out_of_scope", "explain"):
        return intent, ""
    if _STRONG_MEASURE.search(question):
        return "measure", "asks for a measurement"
    if _GUIDELINE.search(question):
        return "guideline", "asks about guidelines or management"
    if intent == "guideline" or (intent == "image_info" and not slots.findings):
        return intent, ""
    if intent == "image_info":  # a question about the image itself names no finding
        intent = "ask_finding"
    if _REPORT.search(question):
        return "report", "mentions a report"
    if intent != "compare_prior" and _EXPLICIT_PRIOR.search(question):
        return "compare_prior", "mentions a prior study"
    if _MEASURE.search(question) and intent in ("ask_finding", "detect_findings", "localize"):
        return "measure", "asks for a measurement"
    if _WHERE.search(question) and slots.findings and intent != "compare_prior":
        return "localize", "asks where a named finding is"
    if intent == "detect_findings" and slots.findings:
        return "ask_finding", "names a finding"
    if intent == "ask_finding" and not slots.findings and not slots.unsupported_findings:
        return "detect_findings", "names no finding"
    return intent, ""
