"""The composer: turns this turn's evidence into an `Answer` of cited claims.

Sentences come from `prompts/composer.yaml`; every value in them is copied from the evidence
they cite. Statements that are not about the image (no prior available, a tool not installed,
out of scope) are `stated` claims with fixed wording and no evidence; the verifier accepts
them only verbatim.
"""

from __future__ import annotations

import re
from typing import Any

from radpilot import prompts
from radpilot.agent.ledger import by_id
from radpilot.agent.planner import PlannerView
from radpilot.agent.types import Answer, Certainty, Claim, FindingRow, Message
from radpilot.agent.understanding import Vocabulary
from radpilot.tools.base import Evidence

CERTAINTY: dict[str, Certainty] = {
    "present": "likely",
    "uncertain": "possible",
    "absent": "unlikely",
}
STATED_KEYS = ("no_prior", "prior_without_tool", "no_measure_tool", "no_guideline_tool",
               "no_guideline_match", "out_of_scope", "explain_none", "no_study")  # fmt: skip
GUIDELINE_PASSAGES = 2  # an answer quotes at most this many notes; the rest stay in the evidence
UNCONFIRMED_CHARS = 400


def templates() -> dict[str, Any]:
    loaded: dict[str, Any] = prompts.load("composer")
    return loaded


def stated_texts() -> set[str]:
    """Every fixed sentence the composer may write without citing evidence."""
    text = templates()
    unsupported: list[str] = prompts.load("findings")["_unsupported"]
    return {text[key] for key in STATED_KEYS} | {
        text["not_assessed"].format(finding=phrase) for phrase in unsupported
    }


def first_sentences(text: str, limit: int = 2) -> str:
    """The opening sentences of a note: its main point, quoted verbatim."""
    sentences = re.findall(r"[^.!?]+[.!?]+(?:\s|$)", text)
    return "".join(sentences[:limit]).strip() or text


def zone(y_centre: float, height: int) -> str:
    fraction = y_centre / height
    return "upper zone" if fraction < 0.4 else "mid zone" if fraction < 0.6 else "lower zone"


class Composer:
    def __init__(self) -> None:
        self.text = templates()
        self.vocabulary = Vocabulary()

    def compose(self, view: PlannerView, history: list[Message]) -> Answer:
        intent = view.understanding.intent
        ledger = by_id(view.ledger)
        turn = [ledger[i] for i in view.turn_evidence if i in ledger]
        answer = Answer(evidence=turn)
        if intent == "out_of_scope":
            answer.claims.append(self._stated("out_of_scope"))
        elif intent == "explain":
            self._explain(answer, history, ledger)
        elif intent == "guideline":
            self._guideline(answer, view, turn)
        elif view.current() is None:
            answer.claims.append(self._stated("no_study"))
        elif intent == "image_info":
            self._image_info(answer, turn)
        elif intent == "compare_prior":
            self._compare(answer, view, turn)
        elif intent == "measure":
            self._measure(answer, view, turn)
        else:
            self._findings(answer, view, turn)
        self._descriptions(answer, turn)
        for failure in view.failures:
            key = "refused_image" if failure.code == "qc_refused" else "tool_failed"
            answer.limitations.append(
                self.text[key].format(
                    reason=failure.message, tool=failure.tool, message=failure.message
                )  # fmt: skip
            )
        if view.understanding.ignored:
            answer.limitations.append(self.text["ignored_instructions"])
        self._limitations(answer, turn)
        return answer

    def _stated(self, key: str) -> Claim:
        return Claim(text=self.text[key], evidence=[], certainty="stated")

    def _finding_claim(self, row: dict[str, Any], evidence: Evidence) -> Claim:
        text = self.text["finding"][row["status"]].format(
            finding=row["name"], probability=row["probability"], threshold=row["threshold"]
        )
        return Claim(text=text, evidence=[evidence.id], certainty=CERTAINTY[row["status"]])

    def _findings(self, answer: Answer, view: PlannerView, turn: list[Evidence]) -> None:
        current = view.current()
        assert current is not None
        slots = view.understanding.slots
        for phrase in slots.unsupported_findings:
            answer.claims.append(
                Claim(
                    text=self.text["not_assessed"].format(finding=phrase),
                    evidence=[],
                    certainty="stated",
                )  # fmt: skip
            )
        classification = next(
            (e for e in turn if e.tool == "classify_findings"
             and e.inputs.get("study_id") == current.study_id), None,
        )  # fmt: skip
        if classification is None:
            return
        rows = classification.values.get("findings", [])
        answer.findings = [
            FindingRow(name=r["name"], probability=r["probability"], status=r["status"],
                       evidence=[classification.id])
            for r in rows
        ]  # fmt: skip
        if (
            view.understanding.intent in ("ask_finding", "localize", "compare_prior")
            and slots.findings
        ):
            chosen = [r for r in rows if r["name"] in slots.findings]
        else:
            chosen = [r for r in rows if r["status"] == "present"]
            chosen.sort(key=lambda r: -r["probability"])
            if not chosen:
                answer.claims.append(
                    Claim(
                        text=self.text["no_positive"],
                        evidence=[classification.id],
                        certainty="unlikely",
                    )  # fmt: skip
                )
        answer.claims.extend(self._finding_claim(row, classification) for row in chosen)
        borderline = [r for r in rows if r["status"] == "uncertain" and r not in chosen]
        if borderline:  # one sentence, not one claim each: an overview stays readable
            items = ", ".join(f"{r['name']} ({r['probability']:.2f})" for r in borderline)
            answer.claims.append(
                Claim(
                    text=self.text["borderline"].format(items=items),
                    evidence=[classification.id],
                    certainty="possible",
                )  # fmt: skip
            )
        for evidence in turn:
            if evidence.tool == "localize_finding" and evidence.values.get("regions"):
                answer.claims.append(self._location_claim(evidence))

    def _descriptions(self, answer: Answer, turn: list[Evidence]) -> None:
        """A generative description counts only where the classifier agrees on the same study."""
        for described in (e for e in turn if e.tool == "describe_image"):
            study = described.inputs.get("study_id")
            rows = {row["name"]: (row, e) for e in turn
                    if e.tool == "classify_findings" and e.inputs.get("study_id") == study
                    for row in e.values.get("findings", [])}  # fmt: skip
            mentioned = self.vocabulary.findings_in(described.values.get("text", ""))
            confirmed = [f for f in mentioned if f in rows and rows[f][0]["status"] != "absent"]
            for finding in confirmed:
                row, classification = rows[finding]
                text = self.text["described_confirmed"].format(
                    finding=finding, certainty=CERTAINTY[row["status"]],
                    probability=row["probability"],
                )  # fmt: skip
                answer.claims.append(Claim(text=text, evidence=[classification.id, described.id],
                                           certainty=CERTAINTY[row["status"]]))  # fmt: skip
            if len(confirmed) < len(mentioned) or not mentioned:
                answer.limitations.append(self.text["described_unconfirmed"].format(
                    evidence_id=described.id,
                    text=described.values.get("text", "")[:UNCONFIRMED_CHARS],
                ))  # fmt: skip

    def _location_claim(self, evidence: Evidence) -> Claim:
        region = evidence.values["regions"][0]
        height = evidence.values["image_size"][1]
        x, y, w, h = region["box"]
        values = {"finding": evidence.values["finding"], "x": x, "y": y, "w": w, "h": h,
                  "side": region["side"], "zone": zone(y + h / 2, height)}  # fmt: skip
        key = "location_central" if region["side"] == "central" else "location"
        return Claim(text=self.text[key].format(**values), evidence=[evidence.id],
                     certainty="possible")  # fmt: skip

    def _guideline(self, answer: Answer, view: PlannerView, turn: list[Evidence]) -> None:
        search = next((e for e in turn if e.tool == "search_guidelines"), None)
        if search is None:
            installed = "search_guidelines" in view.available_tools
            answer.claims.append(self._stated("no_guideline_match" if installed
                                              else "no_guideline_tool"))  # fmt: skip
            return
        passages = search.values.get("passages", [])
        if search.values.get("weak") or not passages:
            answer.claims.append(self._stated("no_guideline_match"))
            return
        for passage in passages[:GUIDELINE_PASSAGES]:
            quote = first_sentences(passage["text"])
            source = self.text["guideline_source"].format(
                body=passage["citation"]["issuing_body"], year=passage["citation"]["year"],
                document=passage["citation"]["document"],
            )  # fmt: skip
            answer.claims.append(
                Claim(text=f"{source}: {quote}", evidence=[search.id], certainty="stated")
            )

    def _measure(self, answer: Answer, view: PlannerView, turn: list[Evidence]) -> None:
        measured = next((e for e in turn if e.tool == "measure"), None)
        if measured is None:
            if "measure" not in view.available_tools:
                answer.claims.append(self._stated("no_measure_tool"))
            return
        v = measured.values

        def length(line: dict[str, Any]) -> str:
            mm = line["length"]["mm"]
            return f"{mm:.1f} mm" if mm is not None else f"{line['length']['pixels']} px"

        def area(value: dict[str, Any]) -> str:
            mm2 = value["mm2"]
            return f"{mm2:.1f} mm²" if mm2 is not None else f"{value['pixels']} px"

        texts = [
            self.text["ctr"].format(
                ratio=v["cardiothoracic_ratio"], heart=length(v["heart_line"]),
                thorax=length(v["thorax_line"]), view=v["view"], reading=v["ctr_reading"],
                threshold=v["pa_threshold"],
            ),
            self.text["lung_areas"].format(
                right=area(v["right_lung_area"]), left=area(v["left_lung_area"]),
                ratio=v["lung_area_ratio_right_to_left"] or 0,
            ),
        ]  # fmt: skip
        answer.claims.extend(Claim(text=t, evidence=[measured.id], certainty="stated")
                             for t in texts)  # fmt: skip
        answer.limitations.extend(v.get("notes", []))

    def _image_info(self, answer: Answer, turn: list[Evidence]) -> None:
        for evidence in turn:
            if evidence.tool == "image_info":
                v = evidence.values
                qc = "passed" if v["qc_ok"] else "failed"
                text = self.text["image_info"].format(
                    width=v["width"], height=v["height"], modality=v["modality"],
                    view=v["view"], qc=qc,
                )  # fmt: skip
                answer.claims.append(Claim(text=text, evidence=[evidence.id], certainty="stated"))

    def _compare(self, answer: Answer, view: PlannerView, turn: list[Evidence]) -> None:
        if not view.priors():
            answer.claims.append(self._stated("no_prior"))
            self._findings(answer, view, turn)  # what was asked, on the current study
            return
        comparison = next((e for e in turn if e.tool == "compare_studies"), None)
        if comparison is not None:
            self._changes(answer, view, comparison)
            return
        roles = {s.study_id: s.role for s in view.studies}
        classifications = [e for e in turn if e.tool == "classify_findings"]
        if not classifications:
            return
        answer.claims.append(self._stated("prior_without_tool"))
        wanted = set(view.understanding.slots.findings)
        if not wanted:  # findings present or uncertain on either study
            wanted = {r["name"] for e in classifications for r in e.values["findings"]
                      if r["status"] != "absent"}  # fmt: skip
        for evidence in sorted(classifications, key=lambda e: roles.get(e.inputs["study_id"], "")):
            role = roles.get(evidence.inputs["study_id"], "current")
            for row in evidence.values["findings"]:
                if row["name"] in wanted:
                    text = self.text["prior_finding"].format(
                        role=role, finding=row["name"], probability=row["probability"],
                        status=row["status"],
                    )  # fmt: skip
                    answer.claims.append(
                        Claim(
                            text=text, evidence=[evidence.id], certainty=CERTAINTY[row["status"]]
                        )  # fmt: skip
                    )

    def _changes(self, answer: Answer, view: PlannerView, comparison: Evidence) -> None:
        wanted = set(view.understanding.slots.findings)
        rows = comparison.values.get("findings", [])
        steady = []
        for row in rows:
            named = row["name"] in wanted
            if row["verdict"] == "unchanged" and not named:
                if row["status"] != "absent" or row["prior_probability"] >= row["threshold"]:
                    steady.append(row["name"])
                continue
            if wanted and not named:
                continue
            text = self.text["change"][row["verdict"]].format(
                finding=row["name"], prior=row["prior_probability"], now=row["probability"],
                margin=row["margin"],
            )  # fmt: skip
            answer.claims.append(Claim(text=text, evidence=[comparison.id], certainty="stated"))
        if steady:
            text = self.text["change_steady"].format(items=", ".join(steady))
            answer.claims.append(Claim(text=text, evidence=[comparison.id], certainty="stated"))
        if not answer.claims:
            answer.claims.append(
                Claim(text=self.text["change_none"], evidence=[comparison.id], certainty="stated")
            )
        measured = comparison.values.get("measurements")
        if measured:
            text = self.text["change_ctr"].format(prior=measured["prior_ctr"], now=measured["ctr"])
            answer.claims.append(Claim(text=text, evidence=[comparison.id], certainty="stated"))

    def _explain(self, answer: Answer, history: list[Message], ledger: dict[str, Evidence]) -> None:
        previous = next((m.answer for m in reversed(history)
                         if m.role == "assistant" and m.answer is not None), None)  # fmt: skip
        cited = [c for c in previous.claims if c.evidence] if previous else []
        if not cited:
            answer.claims.append(self._stated("explain_none"))
            return
        for claim in cited:
            evidence = ledger[claim.evidence[0]]
            model = evidence.models[0].name if evidence.models else "no model"
            text = self.text["explain_item"].format(
                text=claim.text, tool=evidence.tool, model=model, evidence_id=evidence.id
            )
            answer.claims.append(Claim(text=text, evidence=claim.evidence,
                                       certainty=claim.certainty))  # fmt: skip
            if evidence not in answer.evidence:
                answer.evidence.append(evidence)

    def _limitations(self, answer: Answer, turn: list[Evidence]) -> None:
        for evidence in turn:
            for item in evidence.values.get("limitations", []):
                if item not in answer.limitations:
                    answer.limitations.append(item)
        if self.text["decision_support"] not in answer.limitations:
            answer.limitations.append(self.text["decision_support"])
