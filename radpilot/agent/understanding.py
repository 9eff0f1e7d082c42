"""Understanding a question: intent (MiniLM embeddings against exemplars, then rules) and
slots (findings and their synonyms, laterality, prior reference, report format).

Deterministic for a given question and exemplar set. Text inside the question can only ever
select one of the fixed intents; it never names tools or arguments directly.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import numpy as np

from radpilot import prompts
from radpilot.agent.dialogue import resolve, sentences
from radpilot.agent.targets import (
    QuestionReader,
    TargetVocabulary,
    phrase_pattern,
    split_questions,
    without_discourse,
)
from radpilot.agent.types import DialogueFocus, FocusFinding, Intent, Slots, Target, Understanding
from radpilot.core.instructions import split_instructions

if TYPE_CHECKING:
    from radpilot.knowledge.embedding import SentenceEmbedder

_STUDY = r"(film|films|study|studies|x-?rays?|image|images|exam|radiographs?|one|ones|cxrs?)"
_PRIOR = re.compile(
    rf"\b(prior|(previous|earlier|old|older|last) {_STUDY}|last (week|month|year|time)|"
    r"interval|changed?|compared?|comparison|since (the|her|his|last|previous|prior|then|"
    r"yesterday|\d)|progress(ed|ion)?|better|worse|resolved|improv(ed|ing)|before|than last|"
    r"new|newly|anymore|persist\w*|earlier|cleared|gone|differ(ent)? from|the previous|"
    r"grown|grow(ing)?|shrunk|shrinking|"
    r"yesterday'?s|last one|"
    r"(was|were) (it|this|that|they) there|used to)\b",
    re.IGNORECASE,
)
_EXPLICIT_PRIOR = re.compile(
    rf"\b(prior|(previous|earlier|old|older|last) {_STUDY}|compar(e|ed|es|ing|ison)|"
    r"last (week|month|year)|(worse|better|bigger|smaller|larger) than (on )?(the |her |his )?"
    r"\w*\s?(film|x-?ray|cxr|one|study|image|before|last)|"
    r"interval|since (the|her|his|last|previous|prior|then|\d)|"
    # the answer to "which prior?": "the most recent one", "prior study 2"
    r"(most recent|latest|newest|oldest|earliest) (one|prior|study|film)|prior study \d)\b",
    re.IGNORECASE,
)
# "pls compare w prior. has it grown?": a request to compare, whatever the asking sentence says.
_COMPARE_REQUEST = re.compile(
    r"\bcompar(e|ed|ing|ison)\b[^.?!]{0,12}\b(with|w/?|to|against|vs)\b[^.?!]{0,6}"
    r"\b(the |her |his )?(prior|previous|old|last|earlier)\b", re.IGNORECASE,
)
# "the reg says ...", "radiographer flagged ...": someone else's read, which the question checks.
_SOMEONE_SAID = re.compile(r"\b(says|said|thinks|thought|reckons|reported|flagged|called it|"
                           r"told me|mentioned)\b", re.IGNORECASE)
# ", any consolidation?": history before the comma, the presence question after it.
_ASKING_AFTER_COMMA = re.compile(r",\s+(?=(any|is there|are there|query|rule out)\b)",
                                 re.IGNORECASE)
_WHERE = re.compile(
    r"\b(where|which side|what side|same side|locali[sz]e|show me|point|pinpoint|highlight)\b",
    re.IGNORECASE,
)
# Heart size said in words the phrase list cannot hold ("the heart looks a bit big").
_HEART_SIZE = re.compile(
    r"\bheart\b[^.?!]{0,25}\b(big|bigger|enlarged|large|larger|huge|swollen)\b|"
    r"\b(big|bigger|enlarged|large|larger)\b[^.?!]{0,10}\bheart\b",
    re.IGNORECASE,
)
_PLEURA_THICK = re.compile(r"\bpleura\w*\b[^.?!]{0,25}\bthicken\w*", re.IGNORECASE)
# Decisions that belong to the treating clinician, never to a reading tool (the phrases are
# `clinical_decisions` in prompts/targets.yaml); a dose in milligrams is one too.
_TREATMENT = phrase_pattern(prompts.load("targets")["clinical_decisions"])
_DOSE = re.compile(r"\b\d+ ?mg\b", re.IGNORECASE)
# Another modality or body part than a chest radiograph.
_OTHER_IMAGING = re.compile(
    r"\b(?i:look at|read|review|analy[sz]e|interpret|check)\b[^.?!]{0,30}(\b(CT|MRI)\b|"
    r"(?i:\b(ultrasound|abdomen|abdo|abdominal|pelvis|brain|spine|knee|hip|wrist|liver)\b))|"
    r"(?i:\b(abdomen|abdo|abdominal|pelvi[cs]|brain|spine|knee|hip|wrist)\b[^.?!]{0,15}"
    r"\b(x-?ray|film|scan)\b)|\bCT (?i:abdo|abdomen|head|brain|pelvis)\w*\b"
)
# General knowledge (criteria, scores, definitions): answered from the notes.
_KNOWLEDGE = re.compile(
    r"\b(criteria|scored|scoring( system)?|definition of|define|what counts as|"
    r"classification of|in general|what (are|is) the (radiographic |typical |classic |x-?ray )?"
    r"(signs|features|appearances?|causes))\b",
    re.IGNORECASE,
)
_DIFFERENTIAL = re.compile(r"\b(ddx|differentials?|what else could)\b", re.IGNORECASE)
_COULD_IT_BE = re.compile(r"^\s*(could|might|can|would) (it|this|that) (be|just be)\b", re.I)
# An open read phrased as a request about the assistant itself ("your impression?").
_READ = re.compile(
    r"\b(read (this|it|the)|your (read|impression|opinion|thoughts)|make of (this|it)|"
    r"what do you (see|think))\b|^\s*(just |then )?(your )?read\b",
    re.IGNORECASE,
)
_FILLER = re.compile(
    r"\b(any|is|are|there|a|an|the|some|signs?|of|or|and|please|pls|rule|out|r/o|query|"
    r"this|on|film|x-?ray|cxr|here|evidence|seen|visible|present|obvious|do|you|see|at|in|"
    r"bases?|apex|apices|zones?|lobes?|left|right|both|lungs?|sides?|today'?s?|now|still|too|"
    r"also)\b|[^\w\s]",
    re.IGNORECASE,
)
# "nodule, not infiltrate", "not the effusion - the nodule"
_NOT_THAT = re.compile(r"\bnot (the |a |an |that )?[\w ]{3,30}?(?=[,.;!?-]|$)", re.IGNORECASE)
# "Is there a ...?", "Any ...?", "Does she have ...?": a question about a named finding.
_IS_THERE = re.compile(r"^\s*((is|are) there|any|(does|do|has|have) (he|she|they|the patient) "
                       r"(have|got))\b", re.IGNORECASE)  # fmt: skip
_MEASURE = re.compile(
    r"\b(measure|ratio|ctr|how (big|large)|size of|area|diameter|cm|mm)\b", re.IGNORECASE
)
# Only decisive wording overrides the classifier: a named guideline body or the word itself,
# or a normative "where should ..." question; everything else is the classifier's call.
_BODIES = r"BTS|NICE|ESC|ATS|IDSA|ACR|GOLD|ERS|ACCP|CURB-65"  # acronyms: case-sensitive
_GUIDELINE = re.compile(
    rf"\b({_BODIES})\b|(?i:\b(guidelines?|guidance|Fleischner|where should|"
    rf"(does|do|did) (the )?({_BODIES}|Fleischner|society|literature|evidence base) "
    r"(say|recommend)))\b"
)
# "Is the heart big?", "heart size normal?": a yes/no question about cardiomegaly, not a measure.
_YES_NO = re.compile(
    r"^\s*(is|are|does|do|has|any)\b|\b(normal|enlarged|big|ok)\s*\??\s*$|"
    r"\blooks? (a bit |a little |very )?(big|enlarged|large)\b",
    re.IGNORECASE,
)
_STRONG_MEASURE = re.compile(r"\b(ctr|cardiothoracic|measure\w*)\b", re.IGNORECASE)
_ANATOMY = re.compile(
    r"\b(outline|segment|mask|contour|delineate|draw)\w*\b[^?.]*\b(lungs|lung fields?|both lungs|"
    r"heart and lungs?|lungs and heart|anatomy)\b|\blung (areas?|fields?|volumes?|borders?)\b",
    re.IGNORECASE,
)
# "outline the fluid", "draw around it": the region of a named finding, not the anatomy.
_OUTLINE = re.compile(r"\b(outline|segment|contour|delineate|draw (a line )?around|trace)\b", re.I)
_CASES = re.compile(r"\b(similar|cases?|examples?|comparable)\b", re.IGNORECASE)
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
        self.canonical = {p.lower(): f for f, phrases in table.items() for p in [f, *phrases]}
        self._pattern = _phrase_pattern(list(self.canonical))
        self.targets = TargetVocabulary()

    def findings_in(self, text: str) -> list[str]:
        found: list[str] = []
        for match in self._pattern.finditer(text.replace("_", " ")):
            finding = self.canonical[match.group(0).lower()]
            if finding not in found:
                found.append(finding)
        if "Cardiomegaly" not in found and _HEART_SIZE.search(text):
            found.append("Cardiomegaly")
        if "Pleural_Thickening" not in found and _PLEURA_THICK.search(text):
            found.append("Pleural_Thickening")
        return found

    def without_findings(self, text: str) -> str:
        return self._pattern.sub(" ", text.replace("_", " "))

    def _unsupported_spans(self, text: str) -> list[tuple[int, int]]:
        """Where the text names something no model sees, unless a finding's own phrase covers
        it ("coin lesion" stays a nodule; "surgical emphysema" is not emphysema)."""
        pattern = self.targets.unsupported
        if pattern is None:
            return []
        findings = [m.span() for m in self._pattern.finditer(text)]
        return [m.span() for m in pattern.finditer(text)
                if not any(s <= m.start() and m.end() <= e for s, e in findings)]  # fmt: skip

    def without_unsupported(self, text: str) -> str:
        text = text.replace("_", " ")
        for start, end in reversed(self._unsupported_spans(text)):
            text = f"{text[:start]} {text[end:]}"
        return text

    def unsupported_in(self, text: str) -> list[str]:
        """What no installed model sees, by category (prompts/targets.yaml `unsupported`)."""
        text = text.replace("_", " ")
        categories = self.targets.unsupported_category
        return list(dict.fromkeys(categories[text[s:e].lower()]
                                  for s, e in self._unsupported_spans(text)))  # fmt: skip


def extract_slots(text: str, vocabulary: Vocabulary) -> Slots:
    left, right = bool(_LEFT.search(text)), bool(_RIGHT.search(text))
    laterality = None
    if _BILATERAL.search(text) or (left and right):
        laterality = "bilateral"
    elif left:
        laterality = "left"
    elif right:
        laterality = "right"
    # "surgical emphysema", "mediastinal mass": a finding word inside something no model sees
    named = vocabulary.findings_in(vocabulary.without_unsupported(text))
    excluded = vocabulary.findings_in(" ".join(m.group(0) for m in _NOT_THAT.finditer(text)))
    kept = [f for f in named if f not in excluded]
    return Slots(
        findings=kept or named,
        excluded=excluded if kept else [],
        unsupported_findings=vocabulary.unsupported_in(text),
        laterality=laterality,  # type: ignore[arg-type]
        mentions_prior=bool(_PRIOR.search(text)),
        report_format="fhir" if _FHIR.search(text) else None,
    )


CONFIDENT_REFUSAL = 0.35  # the classifier's "out of scope" counts only this sure


class IntentClassifier:
    """Multinomial logistic regression over sentence embeddings, trained at start-up on the
    hand-written phrasings of `prompts/intents.yaml` (a few hundred: well under a second).
    Zero initialisation and full-batch gradient descent make it deterministic."""

    def __init__(self, vectors: np.ndarray, labels: list[str], *, steps: int = 1000,
                 rate: float = 8.0, l2: float = 1e-3) -> None:  # fmt: skip
        self.intents = sorted(set(labels))
        targets = np.zeros((len(labels), len(self.intents)), dtype=np.float32)
        targets[np.arange(len(labels)), [self.intents.index(x) for x in labels]] = 1.0
        x = np.hstack([vectors, np.ones((len(vectors), 1), dtype=np.float32)])
        weights = np.zeros((x.shape[1], len(self.intents)), dtype=np.float32)
        for _ in range(steps):
            gradient = x.T @ (softmax(x @ weights) - targets) / len(x) + l2 * weights
            weights -= rate * gradient
        self.weights = weights

    def probabilities(self, vector: np.ndarray) -> dict[str, float]:
        scores = softmax(np.append(vector, 1.0)[None, :] @ self.weights)[0]
        return {intent: float(p) for intent, p in zip(self.intents, scores, strict=True)}


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


class IntentRecognizer:
    def __init__(self, embedder: SentenceEmbedder) -> None:
        self.embedder = embedder
        self.vocabulary = Vocabulary()
        exemplars: dict[str, list[str]] = prompts.load("intents")
        labels = [intent for intent, texts in exemplars.items() for _ in texts]
        texts = [text for texts in exemplars.values() for text in texts]
        # Trained once when the agent starts, with the models (~3 s on 2 cores), so the first
        # question does not pay for it.
        self.classifier = IntentClassifier(self.embedder.embed(texts), labels)
        self.reader = QuestionReader(list(self.vocabulary.canonical))

    def understand(self, question: str, focus: DialogueFocus | None = None) -> Understanding:
        question, ignored = split_instructions(question)
        if not question:
            # "Pretend there was a prior that was clear": the answer says there is none.
            about_prior = extract_slots(" ".join(ignored), self.vocabulary).mentions_prior
            return Understanding(
                intent="compare_prior" if about_prior else "out_of_scope", confidence=1.0,
                slots=Slots(), method="only instructions to the system, no question",
                ignored=ignored,
            )  # fmt: skip
        question = self.reader.normalise(question)
        parts: list[Understanding] = []
        for text in split_questions(question):
            parts.append(self._understand_one(text, after(focus, parts), ignored))
        if len(parts) == 1:
            return parts[0]
        return parts[0].model_copy(update={"parts": parts, "cleaned": question})

    def _understand_one(self, question: str, focus: DialogueFocus | None,
                        ignored: list[str]) -> Understanding:  # fmt: skip
        slots, clause, asked = question_slots(question, self.vocabulary, self.reader)
        by_intent = self.classifier.probabilities(self.embedder.embed([clause])[0])
        ranked = sorted(by_intent.items(), key=lambda item: -item[1])
        intent, confidence = ranked[0]
        if intent == "out_of_scope" and confidence < CONFIDENT_REFUSAL:
            # Refusing a question about the film costs more than answering from the tools:
            # an unsure "out of scope" gives way (decisions and other imaging have rules).
            intent, confidence = ranked[1]
        bare = is_bare_finding_question(clause, self.vocabulary)
        refined, rule = refine(intent, question, slots, bare=bare,  # type: ignore[arg-type]
                               clause=clause)  # fmt: skip
        understanding = Understanding(
            intent=refined,
            confidence=round(confidence, 3),
            slots=slots,
            method=f"classifier ({intent} {confidence:.2f})" + (f"; rule: {rule}" if rule else ""),
            ignored=ignored,
            cleaned=question,
        )
        focus = focus or DialogueFocus()
        resolved = resolve(understanding, focus)
        same_guideline = any("guideline question" in r for r in resolved.resolved)
        target = Target(kind="knowledge") if same_guideline else self.reader.target(
            question, resolved.intent, resolved.slots,
            decision=rule.startswith("asks for a clinical decision"),
            first_turn=not focus.questions, named=bool(slots.findings), clause=asked,
        )  # fmt: skip
        return with_target(resolved, target)


def question_slots(question: str, vocabulary: Vocabulary,
                   reader: QuestionReader) -> tuple[Slots, str, str]:  # fmt: skip
    """A question's slots, its asking sentence, and that sentence without the acknowledgement
    before it ("ok. any nodules?" -> "any nodules?")."""
    slots = extract_slots(question, vocabulary)
    clause = last_question(question)
    # "had a pneumothorax on that side before. Nodule?": only the asking sentence says
    # whether a comparison is wanted.
    slots.mentions_prior = bool(_PRIOR.search(clause) or _COMPARE_REQUEST.search(question))
    asked = without_discourse(clause)
    if clause != question:
        # "58F, reduced BS R base. Effusion?", "known HFrEF. Heart size normal?": the history
        # names sides and conditions, the asking sentence says what is asked.
        in_clause = extract_slots(asked, vocabulary)
        slots.laterality = in_clause.laterality
        if in_clause.findings or in_clause.unsupported_findings or reader.asks_heart_size(asked):
            slots.findings, slots.excluded = in_clause.findings, in_clause.excluded
            slots.unsupported_findings = in_clause.unsupported_findings
    return slots, clause, asked


def after(focus: DialogueFocus | None, parts: list[Understanding]) -> DialogueFocus | None:
    """The focus a later question of the same message reads: "Pneumothorax? Where?" means
    where the pneumothorax is."""
    if not parts or not parts[-1].slots.findings:
        return focus
    earlier = parts[-1]
    return (focus or DialogueFocus()).model_copy(update={
        "findings": [FocusFinding(name=f, evidence=[]) for f in earlier.slots.findings],
        "intent": earlier.intent,
        "questions": [*(focus.questions if focus else []), earlier.cleaned],
    })  # fmt: skip


def last_question(text: str) -> str:
    """The sentence that asks, when clinical context comes first ("58F, breathless. Effusion?",
    "cough x3 wks, any consolidation": a presence question after a comma asks on its own)."""
    parts = sentences(_ASKING_AFTER_COMMA.sub("; ", text.replace(" - ", "; ")))
    if len(parts) < 2:
        return text
    last = parts[-1]
    if not last.endswith("."):  # the last sentence asks ("... what's the next step")
        return last
    asking = [part for part in parts if part.endswith("?")]
    return asking[-1] if asking else text


def is_bare_finding_question(clause: str, vocabulary: Vocabulary) -> bool:
    """'Atelectasis?', 'any consolidation', 'rule out a pneumothorax pls': a finding and
    hardly anything else."""
    if not vocabulary.findings_in(clause):
        return False
    if _IS_THERE.search(clause):
        return True
    rest = _FILLER.sub(" ", vocabulary.without_findings(clause)).split()
    return len(rest) <= 2


def refine(
    intent: Intent, question: str, slots: Slots, *, bare: bool = False, clause: str | None = None
) -> tuple[Intent, str]:
    """Rules that correct the classifier where wording is decisive. Treatment decisions and
    other imaging are read in the asking sentence (`clause`) only: "on furosemide, any
    oedema?" is a question about the film."""
    asking = clause or question
    decision = _TREATMENT is not None and _TREATMENT.search(asking) or _DOSE.search(asking)
    if decision or _OTHER_IMAGING.search(asking):
        return "out_of_scope", "asks for a clinical decision or another kind of imaging"
    if _GUIDELINE.search(question):
        return "guideline", "asks what the guidelines say"
    if _KNOWLEDGE.search(question):
        return "guideline", "asks for criteria or a definition"
    if _OUTLINE.search(question) and slots.findings and not _ANATOMY.search(question):
        return "segment_region", "asks for the outline of a finding"
    if bare and intent not in ("localize", "compare_prior", "report") and not _WHERE.search(
        question
    ):
        if slots.findings == ["Cardiomegaly"] and "size" in question.lower() and not (
            _YES_NO.search(question)
        ):  # "heart size?": the measured ratio
            return "measure", "asks for the heart's size"
        return "ask_finding", "names a finding and little else"
    if _REPORT.search(question):
        return "report", "mentions a report"
    if _DIFFERENTIAL.search(question):
        return "differential", "asks for a differential"
    if _STRONG_MEASURE.search(question) and intent == "out_of_scope":
        return "measure", "asks for a measurement"
    if intent == "out_of_scope":
        return intent, ""
    if intent == "compare_prior" and not slots.mentions_prior:
        # A change over time needs words about time; otherwise it is a question about now.
        intent = "ask_finding" if slots.findings else "detect_findings"
    if intent == "explain":
        if _READ.search(question):
            return "detect_findings", "asks for a read"
        if slots.findings and _SOMEONE_SAID.search(question):
            # "Reg says right nodule - is that correct?": a colleague's read to check, not an
            # earlier answer of radpilot's to explain
            return "ask_finding", "checks a colleague's read"
        return intent, ""
    if _ANATOMY.search(question):
        return "segment_anatomy", "asks for the lung or heart outlines"
    if _STRONG_MEASURE.search(question):
        return "measure", "asks for a measurement"
    if intent == "measure" and "Cardiomegaly" in slots.findings and _YES_NO.search(question):
        return "ask_finding", "asks whether the heart is enlarged"
    if _COULD_IT_BE.search(question) and slots.findings:
        return "ask_finding", "asks whether it could be a named finding"
    if intent not in ("compare_prior", "guideline", "management") and _EXPLICIT_PRIOR.search(
        question
    ):
        return "compare_prior", "mentions a prior study"
    if slots.unsupported_findings and not slots.findings and intent in (
        "localize", "detect_findings", "segment_region", "image_info"
    ):  # "Is the endotracheal tube in a good position?": say it is not assessed
        return "ask_finding", "names only findings no installed model assesses"
    if intent in ("guideline", "management", "differential", "similar_cases", "segment_region"):
        return intent, ""
    if intent == "image_info" and not slots.findings:
        return intent, ""
    if intent == "image_info":  # a question about the image itself names no finding
        intent = "ask_finding"
    if _MEASURE.search(question) and intent in ("ask_finding", "detect_findings", "localize"):
        return "measure", "asks for a measurement"
    if _WHERE.search(question) and slots.findings and intent != "compare_prior":
        return "localize", "asks where a named finding is"
    if intent == "detect_findings" and slots.findings:
        return "ask_finding", "names a finding"
    return intent, ""


# Intents whose tools can answer a question about a named finding's presence or side.
_READS: set[Intent] = {"ask_finding", "detect_findings", "localize", "image_info", "measure",
                       "explain", "out_of_scope"}  # fmt: skip


def opens_a_read(target: Target, intent: Intent) -> bool:
    """Normality and "what's the main abnormality?" are read from every finding."""
    if target.kind == "normality":
        return intent not in ("report", "compare_prior", "explain")
    return target.kind == "read" and (target.subject == "main finding"
                                      or intent in _READS - {"explain"})  # fmt: skip


def with_target(understanding: Understanding, target: Target) -> Understanding:
    """The understanding with its target, and the intent the target needs: a target that no
    image tool answers (identity, out of scope, knowledge, unsupported) never reads the image;
    a side or heart-size question gets the tools that answer it."""
    intent, slots = understanding.intent, understanding.slots
    kind = target.kind
    updates: dict[str, object] = {}
    if kind in ("identity", "out_of_scope"):
        intent = "out_of_scope"
    elif kind == "knowledge" and (target.subject == "radiography" or intent not in (
            "guideline", "management", "differential")):  # fmt: skip
        intent = "guideline"  # "should she wear a lead apron?": the notes, not the graph
    elif kind == "unsupported":
        intent = "ask_finding"
        updates["unsupported_findings"] = [target.subject]
    elif kind == "attribute":
        intent = "image_info"
    elif kind == "side" and (intent in _READS or target.subject == "opacity side"
                             or intent == "segment_anatomy" and slots.findings):  # "which lung?"
        intent = "localize"
    elif kind == "heart_size" and (intent in _READS or target.closed and intent not in (
            "compare_prior", "report", "explain")):
        intent = "ask_finding" if target.closed else "measure"
        updates["findings"] = ["Cardiomegaly"] if target.closed else []
    elif kind == "finding" and target.closed and (intent in (
            "detect_findings", "image_info", "segment_region", "management", "guideline"
    ) or intent == "similar_cases" and not _CASES.search(understanding.cleaned)
    ) and not understanding.resolved:  # fmt: skip
        intent = "ask_finding"  # "?nodule - incidental": a finding named, a yes/no asked
    elif opens_a_read(target, intent):
        intent = "detect_findings"
    if kind in ("identity", "out_of_scope", "attribute", "unsupported"):
        updates["findings"] = []  # nothing about a finding is asked
    return understanding.model_copy(update={
        "intent": intent, "target": target, "slots": slots.model_copy(update=updates),
        "method": f"{understanding.method}; target: {kind}",
    })  # fmt: skip
