"""The direct answer: the first claim of an answer to a closed or where-question.

A closed question begins "Yes", "No", "Possibly" or "I cannot assess ..."; a where-question
begins with the side and zone (DESIGN.md "Answers"). The words follow each finding's two
operating points (`wording.answer_word`), the question's polarity ("is the heart size
normal?": Yes means normal) and, for a side, the localization. Every value in the sentence is
copied from the evidence it cites; the verifier checks the first word against that evidence.
"""

from __future__ import annotations

import re
from typing import Any

from radpilot.agent.planner import TurnView
from radpilot.agent.targets import TargetVocabulary
from radpilot.agent.types import Certainty, Claim, DirectAnswer, DirectWord, Target
from radpilot.agent.wording import (
    answer_word,
    display,
    film,
    heart_size_call,
    lung_findings,
    row_certainty,
    templates,
    zone,
)
from radpilot.core.contracts import Evidence

# The projection a question proposes; "PA, not AP?" proposes PA only.
_ASKED_PROJECTION = re.compile(
    r"(?<!\bnot )(?<!\bnot an )(?<!\bnot a )\b(AP|PA|anteroposterior|posteroanterior|portable)\b",
    re.I,
)
_OTHER_MODALITY = re.compile(r"\b(ct|mri|ultrasound|scan|pet|angiogram)\b", re.I)
# A lung counts as whiter only by this much mean intensity (0..1): on training patients'
# normal films a larger gap occurs in 7 % (`radpilot models evaluate opacity-side`).
OPACITY_MARGIN = 0.10
# The first word of a change question, by what it asks and the comparison's verdict.
CHANGE_WORDS: dict[str, dict[str, DirectWord]] = {
    "better": {"improved": "yes", "resolved": "yes", "uncertain": "possibly"},
    "worse": {"worsened": "yes", "new": "yes", "uncertain": "possibly"},
    "new": {"new": "yes", "uncertain": "possibly"},
    "changed": {"new": "yes", "resolved": "yes", "worsened": "yes", "improved": "yes",
                "uncertain": "possibly"},
}  # fmt: skip
_WORDS: dict[DirectWord, str] = {"yes": "Yes", "no": "No", "possibly": "Possibly",
                                 "cannot_assess": "I cannot assess"}  # fmt: skip


class DirectAnswers:
    def __init__(self) -> None:
        self.text = templates()
        self.vocabulary = TargetVocabulary()

    def write(self, view: TurnView, turn: list[Evidence]) -> tuple[Claim, DirectAnswer] | None:
        """The claim that answers the question first, and its summary; None when the question
        is open and no side is asked (the answer's own order serves it)."""
        target = view.understanding.target
        writer = {
            "finding": self._finding, "heart_size": self._heart_size, "side": self._side,
            "normality": self._normality, "attribute": self._attribute,
            "unsupported": self._unsupported, "identity": self._identity,
            "change": self._change,
        }.get(target.kind)  # fmt: skip
        if writer is None:
            return None
        return writer(view, target, turn)

    # -- helpers ---------------------------------------------------------------------------
    def _answer(self, word: DirectWord | None, target: Target, text: str, evidence: list[str],
                certainty: Certainty, side: str | None = None
                ) -> tuple[Claim, DirectAnswer]:  # fmt: skip
        claim = Claim(text=text, evidence=evidence, certainty=certainty, answers=word)
        sided = {"bilateral": "both"}.get(side or "", side)
        summary = DirectAnswer(
            word=word, target=target.kind, subject=target.subject or target.kind,
            side=sided if sided in ("left", "right", "both") else None,  # type: ignore[arg-type]
        )  # fmt: skip
        return claim, summary

    def _stated(self, key: str, target: Target, **values: str) -> tuple[Claim, DirectAnswer]:
        text = self.text[key].format(**values) if values else self.text[key]
        return self._answer("cannot_assess" if key != "identity" else None, target, text, [],
                            "stated")  # fmt: skip

    @staticmethod
    def _of(turn: list[Evidence], tool: str, study: str | None) -> Evidence | None:
        return next((e for e in turn if e.tool == tool and e.inputs.get("study_id") == study),
                    None)  # fmt: skip

    def _row(self, view: TurnView, turn: list[Evidence], name: str
             ) -> tuple[dict[str, Any], Evidence] | None:  # fmt: skip
        current = view.current()
        classification = self._of(turn, "classify_findings", current.study_id if current else None)
        if classification is None:
            return None
        rows = {r["name"]: r for r in classification.values.get("findings", [])}
        return (rows[name], classification) if name in rows else None

    def finding_sentence(self, row: dict[str, Any]) -> str:
        certainty = row_certainty(row)
        key = "shifted" if row.get("shifted") and certainty == "possible" else certainty
        return str(self.text["finding"][key].format(
            finding=display(row["name"]), probability=row["probability"],
            rule_out=row["rule_out"], rule_in=row["rule_in"],
        ))  # fmt: skip

    def _unreadable(self, view: TurnView, target: Target) -> tuple[Claim, DirectAnswer] | None:
        """A study the models cannot read (QC refused it): I cannot assess."""
        if view.current() is not None and any(f.code == "qc_refused" for f in view.failures):
            return self._stated("cannot_assess_image", target)
        return None

    # -- writers ---------------------------------------------------------------------------
    def _finding(self, view: TurnView, target: Target, turn: list[Evidence]
                 ) -> tuple[Claim, DirectAnswer] | None:  # fmt: skip
        if not target.closed:
            return None
        found = self._row(view, turn, target.subject)
        if found is None:
            return self._unreadable(view, target)
        row, classification = found
        word = answer_word(row_certainty(row), target.polarity)
        text = f"{self.text['direct'][target.polarity][word]}{self.finding_sentence(row)}"
        return self._answer(word, target, text, [classification.id], row_certainty(row))

    def _heart_size(self, view: TurnView, target: Target, turn: list[Evidence]
                    ) -> tuple[Claim, DirectAnswer] | None:  # fmt: skip
        current = view.current()
        measured = self._of(turn, "measure", current.study_id if current else None)
        found = self._row(view, turn, "Cardiomegaly")
        if found is None:
            if measured is None or target.closed:
                return self._unreadable(view, target)
            return None  # "what is the CTR?": the measurement's own claim answers it
        if target.subject == "ratio" and target.closed and measured is not None:
            return self._ratio(target, measured)
        row, classification = found
        ratio = measured.values["cardiothoracic_ratio"] if measured is not None else None
        projection = str(measured.values["view"]) if measured is not None else "UNKNOWN"
        certainty, basis = heart_size_call(row_certainty(row), ratio, projection)
        word = answer_word(certainty, target.polarity)
        templates = self.text["heart_size_by_ratio" if basis == "ratio" else "heart_size"]
        sentence = templates[certainty].format(
            probability=row["probability"], rule_out=row["rule_out"], rule_in=row["rule_in"],
        )  # fmt: skip
        text = (self.text["direct"][target.polarity][word] if target.closed else "") + sentence
        text = text[0].upper() + text[1:]
        evidence = [classification.id]
        if ratio is not None and measured is not None:
            text = text.removesuffix(".") + self.text["heart_size_ctr"].format(
                ratio=ratio, view=film(measured.values))
            evidence.append(measured.id)
            if projection.upper() == "AP":
                text += " " + self.text["heart_size_ap"]
        return self._answer(word if target.closed else None, target, text, evidence, certainty)

    def _ratio(self, target: Target, measured: Evidence) -> tuple[Claim, DirectAnswer]:
        """"Is the CTR above 0.5?": the measured ratio against the usual PA limit."""
        v = measured.values
        above = v["cardiothoracic_ratio"] > v["pa_threshold"]
        word = answer_word("likely" if above else "unlikely", target.polarity)
        text = self.text["direct"][target.polarity][word] + self.text["ctr_answer"].format(
            ratio=v["cardiothoracic_ratio"], view=film(v), reading=v["ctr_reading"],
            threshold=v["pa_threshold"],
        )  # fmt: skip
        return self._answer(word, target, text, [measured.id], "stated")

    def _side(self, view: TurnView, target: Target, turn: list[Evidence]
              ) -> tuple[Claim, DirectAnswer] | None:  # fmt: skip
        current = view.current()
        study = current.study_id if current else None
        located = [e for e in turn if e.tool == "localize_finding"
                   and e.inputs.get("study_id") == study and e.values.get("regions")]  # fmt: skip
        name = target.subject if target.subject != "opacity side" else (
            str(located[0].values["finding"]) if located else "")  # fmt: skip
        found = self._row(view, turn, name) if name else None
        if found is None:
            if target.subject == "opacity side" and (
                classification := self._of(turn, "classify_findings", study)
            ):
                return self._answer(None, target, self.text["no_side"], [classification.id],
                                    "unlikely")  # fmt: skip
            return self._unreadable(view, target)
        row, classification = found
        certainty = row_certainty(row)
        location = next((e for e in located if e.values["finding"] == name), None)
        central = location is None or location.values["regions"][0]["side"] == "central"
        if target.subject == "opacity side" and central and (
            (whiter := self._whiter_lung(view, target, turn)) is not None
        ):
            return whiter
        if certainty == "unlikely" or location is None:
            if not target.closed:
                return None
            word = answer_word(certainty, "abnormal")
            text = f"{self.text['direct']['abnormal'][word]}{self.finding_sentence(row)}"
            return self._answer(word, target, text, [classification.id], certainty)
        region = location.values["regions"][0]
        side = str(region["side"])
        x, y, w, h = region["box"]
        where = self.text["side_where" if side != "central" else "side_where_central"].format(
            side=side, zone=zone(y + h / 2, location.values["image_size"][1]),
            finding=display(name), x=x, y=y, w=w, h=h,
        )  # fmt: skip
        evidence = [classification.id, location.id]
        sides = {str(r["side"]) for r in location.values["regions"]}
        if target.closed and target.side is not None:
            agrees = side == target.side or (target.side == "bilateral"
                                             and {"left", "right"} <= sides)  # fmt: skip
            word = answer_word(certainty, "abnormal")
            text = f"{self.finding_sentence(row)} {where}"
            if not agrees:
                # The localization names a radiologist's boxed side for 41 of 67 one-sided
                # validation boxes (16 the other side; `radpilot models evaluate
                # localization-side`): evidence elsewhere does not exclude the side asked.
                word = "possibly"
                text += " " + self.text["side_elsewhere"]
            text = self.text["direct"]["abnormal"][word] + text
            return self._answer(word, target, text, evidence, certainty, side=side)
        opener = self.text["side_first"].format(side=side.capitalize()) if side != "central" else (
            self.text["side_central"])  # fmt: skip
        shown = side if side != "central" else None
        return self._answer(None, target, f"{opener}{self.finding_sentence(row)} {where}",
                            evidence, certainty, side=shown)  # fmt: skip

    def _whiter_lung(self, view: TurnView, target: Target, turn: list[Evidence]
                     ) -> tuple[Claim, DirectAnswer] | None:  # fmt: skip
        """Which lung is whiter, from the lung masks' mean intensities, when they differ."""
        current = view.current()
        anatomy = self._of(turn, "segment_anatomy", current.study_id if current else None)
        lungs = {s["name"]: s.get("mean_intensity") for s in
                 (anatomy.values.get("structures", []) if anatomy else [])}  # fmt: skip
        right, left = lungs.get("right lung"), lungs.get("left lung")
        if anatomy is None or right is None or left is None or abs(right - left) <= OPACITY_MARGIN:
            return None
        side, other = ("right", "left") if right > left else ("left", "right")
        text = self.text["whiter_lung"].format(
            side=side, other=other, Side=side.capitalize(),
            whiter=max(right, left), darker=min(right, left),
        )  # fmt: skip
        word: DirectWord | None = None
        if target.closed and target.side in ("left", "right"):
            word = "yes" if target.side == side else "no"
            text = f"{self.text['direct']['abnormal'][word]}{text[0].lower()}{text[1:]}"
        return self._answer(word, target, text, [anatomy.id], "stated", side=side)

    def _normality(self, view: TurnView, target: Target, turn: list[Evidence]
                   ) -> tuple[Claim, DirectAnswer] | None:  # fmt: skip
        current = view.current()
        classification = self._of(turn, "classify_findings", current.study_id if current else None)
        if classification is None:
            return self._unreadable(view, target)
        scope = lung_findings() if target.subject == "lungs" else None
        rows = [r for r in classification.values.get("findings", [])
                if scope is None or r["name"] in scope]  # fmt: skip
        present = sorted((r for r in rows if r["status"] == "present"),
                         key=lambda r: -r["probability"])  # fmt: skip
        between = sorted((r for r in rows if r["status"] == "indeterminate"),
                         key=lambda r: -r["probability"])  # fmt: skip
        certainty: Certainty = "likely" if present else "possible" if between else "unlikely"
        word = answer_word(certainty, target.polarity)
        prefix = self.text["direct"][target.polarity][word]
        items = ", ".join(f"{display(r['name'])} ({r['probability']:.2f})"
                          for r in (present or between)[:4])  # fmt: skip
        scope_word = "lung finding" if scope else "finding"
        key = "present" if present else "indeterminate" if between else "clear"
        if key == "indeterminate" and any(r.get("shifted") for r in rows):
            key = "shifted"  # nothing is ruled in or out on an image unlike the training data
        text = prefix + self.text["normality"][key].format(items=items, scope=scope_word)
        return self._answer(word, target, text, [classification.id], certainty)

    def _attribute(self, view: TurnView, target: Target, turn: list[Evidence]
                   ) -> tuple[Claim, DirectAnswer] | None:  # fmt: skip
        if target.subject in ("sex", "age"):
            return self._stated("attribute_unknown", target, attribute=target.subject)
        current = view.current()
        info = self._of(turn, "image_info", current.study_id if current else None)
        if info is None:
            return None
        v = info.values
        question = view.cleaned_question
        if target.subject == "projection":
            return self._projection(target, info, question)
        asks_other = bool(_OTHER_MODALITY.search(question))
        word: DirectWord | None = None
        if target.closed:
            word = ("no" if asks_other else "yes") if v["qc_ok"] else "possibly"
        key = "modality" if v["qc_ok"] else "modality_refused"
        text = self.text[key].format(modality=v["modality"], width=v["width"], height=v["height"])
        if word is not None:
            text = f"{self.text['direct']['abnormal'][word]}{text}"
        return self._answer(word, target, text, [info.id], "stated")

    def _projection(self, target: Target, info: Evidence, question: str
                    ) -> tuple[Claim, DirectAnswer]:  # fmt: skip
        v = info.values
        estimate = v.get("view_estimate") or {}
        view = str(v.get("view") or "UNKNOWN").upper()
        if view in ("PA", "AP"):
            text = self.text["projection_dicom"].format(view=view)
        elif estimate.get("view") in ("PA", "AP"):
            view = str(estimate["view"])
            text = self.text["projection_model"].format(view=view,
                                                        probability=estimate["probability"])
        else:
            return self._stated("projection_unknown", target)
        asked = {"PA" if a.upper() in ("PA", "POSTEROANTERIOR") else "AP"
                 for a in _ASKED_PROJECTION.findall(question)}  # fmt: skip
        word: DirectWord | None = None
        if target.closed and len(asked) == 1:  # "is this an AP film?", not "AP or PA?"
            word = "yes" if asked == {view} else "no"
        if word is not None:
            text = f"{self.text['direct']['abnormal'][word]}{text[0].lower()}{text[1:]}"
        return self._answer(word, target, text, [info.id], "stated")

    def _change(self, view: TurnView, target: Target, turn: list[Evidence]
                ) -> tuple[Claim, DirectAnswer] | None:  # fmt: skip
        """"Still there?" from the current study; "better?", "grown?", "new?" from the
        comparison's verdict for the finding asked about."""
        comparison = next((e for e in turn if e.tool == "compare_studies"), None)
        asked = self.vocabulary.change_asked(view.cleaned_question)
        if comparison is None and target.subject and asked == "persists":
            # "Still there?" with no prior: what the current study shows answers it.
            return (self._heart_size if target.subject == "Cardiomegaly" else self._finding)(
                view, target, turn)  # fmt: skip
        if not target.closed or not target.subject or comparison is None:
            return None  # "worse than before?" with no prior: the answer says none is available
        row = next((r for r in comparison.values.get("findings", [])
                    if r["name"] == target.subject), None)  # fmt: skip
        if row is None:
            return None
        change = self.text["change"][row["verdict"]].format(
            finding=display(row["name"]), prior=row["prior_probability"],
            now=row["probability"], margin=row["margin"],
        )  # fmt: skip
        if asked == "persists":
            current = self._row(view, turn, target.subject)
            if current is None:
                return None
            now, classification = current
            word = answer_word(row_certainty(now), "abnormal")
            text = f"{self.text['direct']['abnormal'][word]}{self.finding_sentence(now)} {change}"
            return self._answer(word, target, text, [classification.id, comparison.id],
                                row_certainty(now))  # fmt: skip
        word = CHANGE_WORDS[asked].get(row["verdict"], "no")
        text = f"{self.text['direct']['abnormal'][word]}{change[0].lower()}{change[1:]}"
        return self._answer(word, target, text, [comparison.id], "stated")

    def _unsupported(self, view: TurnView, target: Target, turn: list[Evidence]
                     ) -> tuple[Claim, DirectAnswer]:  # fmt: skip
        return self._stated("not_assessed", target, finding=target.subject)

    def _identity(self, view: TurnView, target: Target, turn: list[Evidence]
                  ) -> tuple[Claim, DirectAnswer]:  # fmt: skip
        return self._stated("identity", target)

