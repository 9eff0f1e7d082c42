"""Question targets: what one question asks about, whether it is closed, and its polarity.

The vocabularies live in `prompts/targets.yaml` (data, not code); this module only looks them
up. Understanding calls `QuestionReader.target` once per question part, after the intent
classifier and slot extraction; the planner and the composer read the target to decide which
tools answer it and how the answer begins (DESIGN.md "Answers").
"""

from __future__ import annotations

import re
from difflib import get_close_matches

from radpilot import prompts
from radpilot.agent.types import Intent, Laterality, Slots, Target

# Misspellings: a word this close (difflib ratio) to a finding word counts as that word.
SPELLING_CUTOFF = 0.84
SPELLING_MIN_LENGTH = 6  # shorter words are matched exactly ("mass" is not "mast")
_WORD = re.compile(r"[a-z][a-z'-]+", re.IGNORECASE)
# "and what's the CTR", "also, is ...": a connective that starts a further question.
_NEXT_QUESTION = re.compile(
    r"\s*(?:[,;]|\band\b|\balso\b|\bplus\b)\s+(?=(?:what|whats|what's|where|which|how|is|are|"
    r"does|do|any|can|could|has|have|should|will)\b)",
    re.IGNORECASE,
)
# "..., yes?", "agree?", "is that right?": a yes/no question whatever its first word.
_TAG = re.compile(r"(\b(yes|no|right|correct|true|agree|agreed|ok|okay)\s*\?\s*$)|"
                  r"\b(would you agree|do you agree|is that (right|correct|true)|"
                  r"isn'?t (it|there|that|she|he)|is it not|aren'?t (they|there))\b", re.I)
_ASKS = re.compile(r"(what|whats|what's|where|which|how|is|are|does|do|any|can|could|has|have|"
                   r"should|will|why|who)\b", re.IGNORECASE)
# "is the CTR above 0.5?", "CTR normal?": a yes/no about the ratio; "CTR?" asks for the number.
_COMPARED = re.compile(r"(>|<|\b(above|over|more than|greater|below|under|less than|normal|"
                       r"enlarged|high|raised|exceed\w*)\b)", re.IGNORECASE)
# "?nodule", "r/o pna", "any effusion?": asks whether a finding is there, whatever the intent.
_PRESENCE = re.compile(r"\s*(query|rule out|any|is there|are there)\b", re.IGNORECASE)
_RIGHT_TAG = re.compile(r"(,\s*right|\s+is that right|\s+am i right)\s*\?\s*$", re.IGNORECASE)
_EITHER_OR = re.compile(r"\b(left|right|ap|pa|one side|both)( (upper|middle|lower) lobe)?\s+or\s+"
                        r"(the\s+)?(left|right|ap|pa|both|the other)\b", re.IGNORECASE)
_LEADING_CONNECTIVE = re.compile(r"^\s*(and|also|plus|then|so)\b[,\s]*", re.IGNORECASE)
MAX_PARTS = 3
# Intents that are about the image but not about a named finding or knowledge.
_IMAGE_ACTIONS: set[Intent] = {"localize", "segment_anatomy", "segment_region", "similar_cases",
                               "report", "explain"}  # fmt: skip


def phrase_pattern(phrases: list[str]) -> re.Pattern[str] | None:
    """Whole-word, case-insensitive; longer phrases win. None for an empty list."""
    if not phrases:
        return None
    ordered = sorted(set(phrases), key=len, reverse=True)
    return re.compile(
        r"(?<![\w/])(" + "|".join(re.escape(p) for p in ordered) + r")(?![\w/])", re.IGNORECASE
    )


def _found(pattern: re.Pattern[str] | None, text: str) -> str | None:
    match = pattern.search(text) if pattern is not None else None
    return match.group(0).lower() if match else None


class TargetVocabulary:
    """`prompts/targets.yaml`, compiled once."""

    def __init__(self) -> None:
        table = prompts.load("targets")
        self.abbreviations: dict[str, str] = {k.lower(): v for k, v in
                                              table["abbreviations"].items()}  # fmt: skip
        self._abbreviation = phrase_pattern(list(self.abbreviations))
        self.unsupported_category = {p.lower(): category
                                     for category, phrases in table["unsupported"].items()
                                     for p in phrases}  # fmt: skip
        self.unsupported = phrase_pattern(list(self.unsupported_category))
        self.identity = phrase_pattern(table["identity"])
        self.off_topic = phrase_pattern(table["off_topic"])
        self.attribute_of = {p.lower(): name for name, phrases in table["attributes"].items()
                             for p in phrases}  # fmt: skip
        self.attributes = phrase_pattern(list(self.attribute_of))
        self.normal = phrase_pattern(table["normal_words"])
        self.abnormal = phrase_pattern(table["abnormal_words"])
        self.lungs = phrase_pattern(table["lung_words"])
        self.heart_size = phrase_pattern(table["heart_size_words"])
        self.time = phrase_pattern(table["time_words"])
        self.knowledge = phrase_pattern(table["knowledge"])
        self.closed = phrase_pattern(table["closed_openers"])
        self.open = phrase_pattern(table["open_openers"])
        self.where = phrase_pattern(table["where_words"])
        self.read_cues = phrase_pattern(table["read_cues"])
        self.read_words = phrase_pattern(table["read_words"])
        self.guideline = phrase_pattern(table["guideline_words"])
        self.negations = phrase_pattern(table["negations"])
        self.vague_words = set(table["vague_words"])
        self.change_questions = {str(kind): phrase_pattern(phrases)
                                 for kind, phrases in table["change_questions"].items()}

    def change_asked(self, question: str) -> str:
        """What a change question asks: persists, better, worse, new, or (else) changed."""
        for kind, pattern in self.change_questions.items():
            if pattern is not None and pattern.search(question):
                return kind
        return "changed"

    def expand(self, text: str) -> str:
        """Shorthand spelt out ("r/o ptx" -> "rule out pneumothorax"); "?x" reads "x?"."""
        text = re.sub(r"(^|\s)\?\s*(?=[a-z])", r"\1query ", text, flags=re.IGNORECASE)
        text = _RIGHT_TAG.sub(", correct?", text)  # "no effusion, right?" names no side
        if self._abbreviation is None:
            return text
        return self._abbreviation.sub(lambda m: self.abbreviations[m.group(0).lower()], text)

    def unsupported_categories(self, text: str) -> list[str]:
        if self.unsupported is None:
            return []
        found = [self.unsupported_category[m.group(0).lower()]
                 for m in self.unsupported.finditer(text)]  # fmt: skip
        return list(dict.fromkeys(found))


class Spelling:
    """Finding words misspelt ("pnuemothorax", "efusion") mapped to the vocabulary's own."""

    def __init__(self, words: list[str]) -> None:
        # Single-word names only: "changes" (of "emphysematous changes") is an English word.
        self.words = sorted({p.lower() for p in words
                             if " " not in p and len(p) >= SPELLING_MIN_LENGTH})  # fmt: skip

    def correct(self, text: str) -> str:
        known = set(self.words)

        def fix(match: re.Match[str]) -> str:
            word = match.group(0)
            lowered = word.lower()
            if len(lowered) < SPELLING_MIN_LENGTH or lowered in known:
                return word
            close = get_close_matches(lowered, self.words, n=1, cutoff=SPELLING_CUTOFF)
            return close[0] if close else word

        return _WORD.sub(fix, text)


# "ok. atelectasis?", "fine - any consolidation?", "ok fair, but is there ...": words that
# acknowledge the last answer; "ok" there is not "is it ok?".
_DISCOURSE = re.compile(
    r"^\s*(?:(?:ok|okay|fine|fair|sure|thanks|thank you|great|cool|alright|good|lovely|perfect|"
    r"cheers|understood|got it|hmm+|well|right then)\b[\s,]*)+?(?:[.!;:,–-]+|\bbut\b)\s*"
    r"(?:but\b\s*)?",
    re.IGNORECASE,
)


def without_discourse(text: str) -> str:
    """The question without the acknowledgement before it."""
    rest = _DISCOURSE.sub("", text, count=1)
    return rest if rest.strip() else text


def split_questions(text: str) -> list[str]:
    """The questions of one message, in order: "Any effusion? And the CTR?" -> two. Context
    sentences that ask nothing stay with the question after them."""
    clauses = [c.strip() for sentence in re.findall(r"[^?]+\?*", text)
               for c in _NEXT_QUESTION.split(sentence) if c.strip()]  # fmt: skip
    parts: list[str] = []
    carry = ""
    for number, clause in enumerate(clauses):
        joined = f"{carry} {clause}".strip()
        asks = (clause.endswith("?") or bool(_ASKS.match(_LEADING_CONNECTIVE.sub("", clause)))
                or bool(parts and _LEADING_CONNECTIVE.match(clause)
                        and _LEADING_CONNECTIVE.sub("", clause).strip()))  # "any mass? also CTR"
        if asks or number == len(clauses) - 1:
            if not asks and parts:  # "... ? need to send a letter": context of the last one
                parts[-1] = f"{parts[-1]} {joined}"
            else:
                parts.append(joined)
            carry = ""
        else:
            carry = joined  # "58F, breathless, is there ...": context of the next question
    if len(parts) <= 1:
        return [text]
    return [_LEADING_CONNECTIVE.sub("", p) or p for p in parts[:MAX_PARTS]]


class QuestionReader:
    """Decides a question part's target from its text, intent and slots."""

    def __init__(self, finding_words: list[str]) -> None:
        self.vocabulary = TargetVocabulary()
        self.spelling = Spelling(finding_words)

    def normalise(self, text: str) -> str:
        return self.spelling.correct(self.vocabulary.expand(text))

    def target(self, text: str, intent: Intent, slots: Slots, *, decision: bool = False,
               first_turn: bool = False, named: bool = True,
               clause: str | None = None) -> Target:  # fmt: skip
        """The question's target. `decision`: a treatment decision was asked (refused);
        `first_turn`: nothing earlier in the conversation can give a vague question meaning;
        `named`: the question names its finding (not "DDx?" about the finding in focus);
        `clause`: the asking sentence, without the history or acknowledgement before it."""
        v = self.vocabulary
        asking = clause or without_discourse(text)
        closed = self._closed(text, slots)
        side = first_side(asking) if slots.laterality == "bilateral" and not _both(asking) else (
            slots.laterality)  # fmt: skip
        asks_side = _found(v.where, asking) is not None
        # Polarity is the asking sentence's: "ok. any nodules?" does not ask "is it ok?".
        negated = _found(v.negations, asking) is not None
        normal = _found(v.normal, asking) is not None and not _found(v.abnormal, asking)
        polarity = "normal" if normal != negated else "abnormal"  # "not normal?" asks abnormal

        def asked(kind: str, **extra: object) -> Target:
            """A target of this question: its closedness and sides, plus `extra`."""
            return Target.model_validate({"kind": kind, "closed": closed, "side": side,
                                          "asks_side": asks_side, **extra})  # fmt: skip

        if decision:
            return Target(kind="out_of_scope")
        if _found(v.identity, text) and not (named and slots.findings):
            return Target(kind="identity", subject=_found(v.identity, text) or "")
        if _found(v.knowledge, text):
            return Target(kind="knowledge", subject="radiography")
        if intent == "guideline" and _found(v.guideline, text):
            return Target(kind="knowledge")
        # "this is the portable from this morning. ... heart enlarged?": the asking sentence's
        attribute = v.attribute_of.get(_found(v.attributes, asking) or "")
        if attribute == "opacity side" or (asks_side and not slots.findings
                                           and _found(v.abnormal, text)):  # fmt: skip
            return asked("side", subject="opacity side", asks_side=True)
        if attribute and (not (named and slots.findings)
                          or _found(v.attributes, text.split("?")[0])):  # "Is this AP? ..."
            return asked("attribute", subject=attribute)
        if _found(v.off_topic, text) and not slots.findings and not _found(v.read_cues, text):
            return Target(kind="out_of_scope", subject=_found(v.off_topic, text) or "")
        unsupported = v.unsupported_categories(text)
        if unsupported and not (named and slots.findings):
            return Target(kind="unsupported", subject=unsupported[0], closed=True, side=side)
        about_heart = slots.findings == ["Cardiomegaly"] and (named or intent in (
            "ask_finding", "measure", "detect_findings", "image_info")) or (
            not slots.findings and (intent == "measure" or _found(v.heart_size, text)))
        if about_heart and not _found(v.time, text) and intent not in _IMAGE_ACTIONS - {"explain"}:
            named_ratio = re.search(r"\b(ratio|0\.\d)", text)
            if named_ratio and not _COMPARED.search(text):  # "CTR?": the number, not a yes/no
                return asked("heart_size", closed=False)
            return asked("heart_size", polarity=polarity, subject="ratio" if named_ratio else "")
        if first_turn and not slots.findings and self._vague(text):
            return Target(kind="unclear")
        if intent == "compare_prior" or (slots.mentions_prior and intent != "measure"):
            return asked("change", subject=slots.findings[0] if slots.findings else "")
        if slots.findings and (closed and named and _PRESENCE.match(text) and not _found(
                v.guideline, text) or intent not in (
                "management", "differential", "similar_cases", "guideline")):  # fmt: skip
            kind = "side" if (side is not None or asks_side) and intent != "segment_region" else (
                "finding")  # fmt: skip
            return asked(kind, subject=slots.findings[0], polarity=polarity)
        if closed and not slots.findings and (normal or negated or _found(v.abnormal, text)):
            subject = "lungs" if _found(v.lungs, text) else "film"
            return asked("normality", subject=subject, polarity=polarity)
        if intent in ("management", "differential", "guideline") and not (
            _found(v.read_words, text) and not slots.findings and "differential" not in text.lower()
        ):
            return Target(kind="knowledge")
        if intent == "out_of_scope":
            return Target(kind="out_of_scope")
        if not slots.findings and _found(v.read_words, text) and "differential" not in text.lower():
            return Target(kind="read", subject="main finding")
        if intent in _IMAGE_ACTIONS:
            return Target(kind="anatomy" if intent == "segment_anatomy" else "read")
        if intent in ("detect_findings", "image_info") and _found(v.read_cues, text):
            return Target(kind="read")
        return Target(kind="read")

    def asks_heart_size(self, text: str) -> bool:
        return _found(self.vocabulary.heart_size, text) is not None

    def _vague(self, text: str) -> bool:
        """Too few words of substance to say what is asked ("the thing from before?")."""
        words = [w for w in _WORD.findall(text.lower()) if w not in self.vocabulary.vague_words]
        return len(words) <= 1 and not _found(self.vocabulary.read_cues, text)

    def _closed(self, text: str, slots: Slots) -> bool:
        """A yes/no question: its asking clause opens with an auxiliary verb or "any", ends in
        a tag ("..., right?", "agree?"), or is a bare "Effusion?" / "Enlarged heart?"."""
        v = self.vocabulary
        lowered = text.strip().lower()
        clauses = [c.strip() for c in re.split(r"[,;:()]|\s[-–]\s|\.\s", lowered) if c.strip()]
        asking = clauses[-1] if clauses else lowered
        if _EITHER_OR.search(lowered):  # "left or right?", "AP or PA?": not a yes/no
            return False
        if _TAG.search(lowered):
            return True
        starts = [_WORD.findall(c)[:1] for c in clauses]
        if any(w and v.open is not None and v.open.fullmatch(w[0]) for w in starts[-1:]):
            return False
        if v.closed is not None and any(v.closed.match(c) for c in (asking, *clauses)):
            return True
        opens_anywhere = any(w and v.open is not None and v.open.fullmatch(w[0]) for w in starts)
        asked_sentences = re.findall(r"[^?.!]+\?", lowered)  # "Big heart? known CCF"
        if asked_sentences and not opens_anywhere:
            return True
        return bool(slots.findings or slots.unsupported_findings) and len(lowered.split()) <= 4


def first_side(text: str) -> Laterality | None:
    """The side named first ("is the right lung whiter than the left?" -> right)."""
    match = re.search(r"\b(left|right)\b", text, re.IGNORECASE)
    return match.group(1).lower() if match else None  # type: ignore[return-value]


def _both(text: str) -> bool:
    return bool(re.search(r"\b(both|bilateral|bilaterally)\b", text, re.IGNORECASE))
