"""The grounding verifier: every claim is checked against the evidence it cites.

Checks: cited evidence exists in this session's ledger; every number in the text equals a
value of the cited evidence at the precision and with the sign written; every finding named is
in the cited evidence, with the same direction (likely / possible / unlikely); left or right
only when a cited localization (or a measurement of that side) says so; a prior study only
when a cited result comes from a prior of this session; guideline language only with cited
guideline evidence, and a claim resting on guideline evidence alone must quote a cited passage
verbatim, naming its source. Fixed statements (`stated`) pass only verbatim. Unsupported claims
are removed and counted; the answer says so.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel

from radpilot.agent.types import Answer, Certainty, Claim, StudyRef
from radpilot.agent.understanding import Vocabulary
from radpilot.agent.wording import (
    DIRECTION,
    answer_word,
    graph_claims,
    heart_size_certainty,
    lung_findings,
    row_certainty,
    stated_texts,
    templates,
)
from radpilot.core.contracts import Evidence

# A leading minus is the number's sign unless it joins two words or numbers (2024-01-15, T4-5);
# a full stop after a number ends the sentence, a dot and a digit make it a version or UID.
_NUMBER = re.compile(r"(?<![\w.])(-?\d+(?:\.\d+)?)(?!\w|\.\d)")
_ABSENT = re.compile(r"\b(unlikely|absent|no evidence|not present|ruled out)\b", re.I)
_UNCERTAIN = re.compile(r"\b(possible|uncertain|equivocal|indeterminate)\b", re.I)
# The direct answer's first word; "within normal limits" answers a question of normal polarity.
_FIRST_WORD = re.compile(r"^(Yes|No|Possibly|I cannot assess)\b")
_NORMAL_POLARITY = re.compile(r"^(Yes, within normal limits|No, not within normal limits)\b")
_WORD_OF = {"Yes": "yes", "No": "no", "Possibly": "possibly", "I cannot assess": "cannot_assess"}
_PRESENT = re.compile(r"\b(likely|present|definite|confirmed|there is)\b", re.I)
_SIDE = re.compile(r"\b(left|right)\b", re.I)
_PRIOR = re.compile(r"\b(prior|previous|earlier study|last (week|month|year)|old film)\b", re.I)
_GUIDELINE = re.compile(r"\b(guideline|recommend\w*|BTS|Fleischner|ATS|IDSA|ESC|NICE)\b")
REMOVED_NOTICE = (
    "{count} statement(s) were removed because the evidence they cite does not support them."
)


class Rejection(BaseModel):
    text: str
    reason: str


class VerificationReport(BaseModel):
    checked: int
    removed: list[Rejection]


def numbers_in(value: Any) -> Iterator[float]:
    if isinstance(value, bool):
        return
    if isinstance(value, int | float):
        yield float(value)
    elif isinstance(value, dict):
        for item in value.values():
            yield from numbers_in(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from numbers_in(item)


def numbers_written(text: str) -> list[str]:
    """The numbers in a sentence, as written (so their precision is known)."""
    return _NUMBER.findall(text)


def quotes_knowledge(text: str, cited: list[Evidence]) -> bool:
    """'<source>: <quote>', the source written as the composer writes a cited passage's
    citation and the quote found verbatim in that passage."""
    form = templates()["guideline_source"]
    for evidence in cited:
        for passage in evidence.values.get("passages", []):
            cite = passage["citation"]
            source = form.format(body=cite["issuing_body"], year=cite["year"],
                                 document=cite["document"])  # fmt: skip
            quote = text.removeprefix(f"{source}: ")
            if quote != text and quote and quote in passage["text"]:
                return True
    return False


def _matches(written: str, values: list[float]) -> bool:
    decimals = len(written.split(".")[1]) if "." in written else 0
    target = float(written)
    return any(abs(round(v, decimals) - target) < 10 ** (-decimals) / 2 for v in values)


def direction_of(text: str) -> str | None:
    if _ABSENT.search(text):
        return "absent"
    if _UNCERTAIN.search(text):
        return "uncertain"
    if _PRESENT.search(text):
        return "present"
    return None


def _rows(evidence: list[Evidence]) -> dict[str, dict[str, Any]]:
    """Each finding's row (probability, threshold, status) in the cited evidence."""
    rows: dict[str, dict[str, Any]] = {}
    for item in evidence:
        for row in item.values.get("findings", []):
            if isinstance(row, dict) and {"name", "probability", "threshold"} <= set(row):
                rows[row["name"]] = row
    return rows


def _named(evidence: list[Evidence]) -> set[str]:
    names = set(_rows(evidence))
    names.update(str(e.values["finding"]) for e in evidence if "finding" in e.values)
    return names


def _expected(name: str, row: dict[str, Any], cited: list[Evidence]) -> Certainty:
    """A finding's certainty from its row; heart size reads the cited measured ratio too."""
    certainty = row_certainty(row)
    measured = next((e for e in cited if "cardiothoracic_ratio" in e.values), None)
    if name == "Cardiomegaly" and measured is not None:
        return heart_size_certainty(certainty, measured.values["cardiothoracic_ratio"],
                                    str(measured.values.get("view", "")))  # fmt: skip
    return certainty


def first_word_problem(claim: Claim, text: str, named: list[str], cited: list[Evidence],
                       lung_findings: list[str]) -> str | None:  # fmt: skip
    """Yes only at or above rule-in, No only below rule-out, Possibly in between (swapped for
    a question of normal polarity); a side answer is checked by the laterality rule."""
    match = _FIRST_WORD.match(text)
    if match is None:
        return "a direct answer must begin Yes, No, Possibly or I cannot assess" if (
            claim.answers is not None) else None  # fmt: skip
    word = _WORD_OF[match.group(1)]
    if claim.answers is not None and word != claim.answers:
        return f"begins {match.group(1)!r} but answers {claim.answers}"
    if word == "cannot_assess" or any(e.tool == "compare_studies" for e in cited):
        return None  # a change answer follows the comparison's verdict, quoted in the claim
    rows = _rows(cited)
    located = any(e.tool == "localize_finding" for e in cited)
    polarity = "normal" if _NORMAL_POLARITY.match(text) else "abnormal"
    if named:
        certainties = {_expected(n, rows[n], cited) for n in named if n in rows}
    elif "below its rule-out point" in text:  # "no acute finding above the operating points"
        scope = lung_findings if "lung finding" in text else list(rows)
        certainties = {row_certainty(rows[n]) for n in scope if n in rows}
        certainties = {"likely"} if certainties - {"unlikely"} else {"unlikely"}
    else:
        return None
    words = {answer_word(c, polarity) for c in certainties}  # type: ignore[arg-type]
    if located and "likely" in certainties:
        # a side answer: the finding elsewhere than the side asked is Possibly or No
        words |= {"possibly", "no"}
    if word not in words if located else words != {word}:
        return f"answers {word} but the evidence says {', '.join(sorted(words))}"
    return None


def _sides(evidence: list[Evidence]) -> set[str]:
    """The sides a cited result speaks of: localized regions, a measurement's per-side values,
    segmented structures named by side."""
    found = {r.get("side") for e in evidence for r in e.values.get("regions", [])}
    found |= {side for e in evidence if e.kind == "measurement" for side in ("left", "right")
              if any(key.startswith(f"{side}_") for key in e.values)}  # fmt: skip
    found |= {side for e in evidence for s in e.values.get("structures", [])
              for side in ("left", "right") if str(s.get("name", "")).startswith(side)}  # fmt: skip
    # A reference case's labels ("Pleural Effusion/left/large") state their own side.
    found |= {side for e in evidence for case in e.values.get("cases", [])
              for side in ("left", "right")
              if any(f"/{side}" in label.lower() for label in case.get("labels", []))}  # fmt: skip
    return {side for side in found if side}


class Verifier:
    def __init__(self, vocabulary: Vocabulary) -> None:
        self.vocabulary = vocabulary
        self.stated = stated_texts()
        self.lung_findings = lung_findings()

    def verify(
        self, answer: Answer, ledger: dict[str, Evidence], studies: list[StudyRef]
    ) -> tuple[Answer, VerificationReport]:
        kept: list[Claim] = []
        removed: list[Rejection] = []
        for claim in answer.claims:
            reason = self.check(claim, ledger, studies)
            if reason is None:
                kept.append(claim)
            else:
                removed.append(Rejection(text=claim.text, reason=reason))
        findings = [row for row in answer.findings if self._row_supported(row, ledger)]
        limitations = list(answer.limitations)
        if removed:
            limitations.insert(0, REMOVED_NOTICE.format(count=len(removed)))
        # A direct answer stands only while the claim that gives it does.
        words = {c.answers for c in kept if c.answers is not None}
        direct = [d for d in answer.direct if d.word is None or d.word in words]
        verified = answer.model_copy(
            update={"claims": kept, "findings": findings, "limitations": limitations,
                    "direct": direct}  # fmt: skip
        )
        report = VerificationReport(checked=len(answer.claims), removed=removed)
        return verified, report

    def check(
        self, claim: Claim, ledger: dict[str, Evidence], studies: list[StudyRef]
    ) -> str | None:
        """None when the claim is supported, else why not."""
        if claim.certainty == "stated":
            if claim.text in self.stated and not claim.evidence:
                return None
            if not claim.evidence:
                return "uncited statement that is not one of the fixed statements"
        if not claim.evidence:
            return "cites no evidence"
        missing = [i for i in claim.evidence if i not in ledger]
        if missing:
            return f"cites evidence not in this session: {', '.join(missing)}"
        cited = [ledger[i] for i in claim.evidence]
        text = claim.text.split(" — from ")[0]  # an explanation's provenance tail is not a claim
        if all(e.kind == "guideline" for e in cited):
            # General knowledge, not a statement about the image: it must quote its source.
            if quotes_knowledge(text, cited) or any(
                text in graph_claims(e.values, steps_first=False) for e in cited
            ):
                return None
            return "does not quote the cited guideline passage"
        values = [v for e in cited for v in numbers_in(e.values)]
        for written in numbers_written(text):
            if not _matches(written, values):
                return f"number {written} is not in the cited evidence"
        named = self.vocabulary.findings_in(text)
        labels = " ".join(label for e in cited for case in e.values.get("cases", [])
                          for label in case.get("labels", []))  # fmt: skip
        known = _named(cited) | set(self.vocabulary.findings_in(labels))  # cases name theirs
        for finding in named:
            if finding not in known:
                return f"{finding} is not in the cited evidence"
        rows = _rows(cited)
        problem = first_word_problem(claim, text, named, cited, self.lung_findings)
        if problem is not None:
            return problem
        direction = direction_of(text)
        if len(named) == 1 and named[0] in rows and direction is not None:
            expected = _expected(named[0], rows[named[0]], cited)
            if direction != DIRECTION[expected]:
                return f"says {direction} but the evidence says {DIRECTION[expected]} ({expected})"
            if claim.certainty != expected:
                return f"certainty {claim.certainty} does not match the evidence"
        sides = {m.lower() for m in _SIDE.findall(text)}
        if sides and not sides <= _sides(cited):
            return f"laterality ({', '.join(sorted(sides))}) not supported by a localization"
        if _PRIOR.search(text):
            priors = {s.study_id for s in studies if s.role == "prior"}
            if not any(e.kind == "comparison" or e.inputs.get("study_id") in priors
                       for e in cited):  # fmt: skip
                return "mentions a prior study that no cited evidence comes from"
        if _GUIDELINE.search(text) and not any(e.kind == "guideline" for e in cited):
            return "guideline statement without cited guideline evidence"
        return None

    def _row_supported(self, row: Any, ledger: dict[str, Evidence]) -> bool:
        for evidence_id in row.evidence:
            evidence = ledger.get(evidence_id)
            if evidence is None:
                return False
            for item in evidence.values.get("findings", []):
                if item.get("name") == row.name:
                    return bool(item.get("probability") == row.probability
                                and item.get("status") == row.status)  # fmt: skip
        return False
