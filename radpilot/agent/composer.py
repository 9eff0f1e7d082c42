"""The composer: turns this turn's evidence into an `Answer` of cited claims.

Sentences come from `prompts/composer.yaml`; every value in them is copied from the evidence
they cite. Statements that are not about the image (no prior available, a tool not installed,
out of scope) are `stated` claims with fixed wording and no evidence; the verifier accepts
them only verbatim.
"""

from __future__ import annotations

import re
from typing import Any

from radpilot.agent.direct import DirectAnswers
from radpilot.agent.ledger import by_id
from radpilot.agent.planner import TurnView, clarification
from radpilot.agent.types import Answer, Claim, FindingRow, Intent, Message
from radpilot.agent.understanding import Vocabulary
from radpilot.agent.wording import display, film, graph_claims, row_certainty, templates, zone
from radpilot.core.contracts import Evidence
from radpilot.tools.models.domain_guard import DomainCheck

GUIDELINE_PASSAGES = 2  # an answer quotes at most this many notes; the rest stay in the evidence
UNCONFIRMED_CHARS = 400
READ_FINDINGS = 4  # an open read states at most this many findings one by one
URGENT = ("Pneumothorax",)  # named in any answer about the image when above its operating point
SIMILAR_CASES = 3
# The tool whose evidence answers each intent: its claims come first.
PRIMARY: dict[Intent, str] = {
    "localize": "localize_finding", "measure": "measure", "segment_anatomy": "segment_anatomy",
    "segment_region": "segment_region", "management": "knowledge_graph",
    "differential": "knowledge_graph", "similar_cases": "similar_cases",
    "guideline": "search_guidelines", "image_info": "image_info",
}  # fmt: skip


def first_sentences(text: str, limit: int = 2) -> str:
    """The opening sentences of a note, quoted verbatim (a prefix of the text): its main point.
    A sentence ends at . ! or ? followed by white space, so "0.6" does not end one."""
    opening = re.match(rf"(?:.+?[.!?](?:\s+|$)){{1,{limit}}}", text, re.DOTALL)
    return opening.group(0).strip() if opening else text


class Composer:
    def __init__(self) -> None:
        self.text = templates()
        self.vocabulary = Vocabulary()
        self.direct = DirectAnswers()

    def compose(self, view: TurnView, history: list[Message]) -> Answer:
        """One answer for every question the message asks, each answered first, in order."""
        parts = [self._compose_one(part, history) for part in view.parts()]
        if len(parts) == 1:
            return parts[0]
        merged = parts[0].model_copy(deep=True)
        for part in parts[1:]:
            merged.claims += [c for c in part.claims if c not in merged.claims]
            merged.evidence += [e for e in part.evidence if e not in merged.evidence]
            merged.findings = merged.findings or part.findings
            merged.limitations += [x for x in part.limitations if x not in merged.limitations]
            merged.direct += part.direct
        return merged

    def _compose_one(self, view: TurnView, history: list[Message]) -> Answer:
        """Claims from the evidence this turn produced, whichever planner chose the tools:
        each tool's evidence has a writer; the intent only orders them and picks fixed
        statements for what could not be answered. A closed question's direct answer comes
        first."""
        intent = view.understanding.intent
        target = view.understanding.target
        ledger = by_id(view.ledger)
        turn = [ledger[i] for i in view.turn_evidence if i in ledger]
        answer = Answer(evidence=turn)
        if target.kind == "unclear":
            answer.claims.append(Claim(text=clarification(), evidence=[], certainty="stated"))
        elif target.kind == "identity":
            answer.claims.append(self._stated("identity"))
        elif intent == "out_of_scope":
            answer.claims.append(self._stated("off_topic" if target.subject else "out_of_scope"))
        elif intent == "explain":
            self._explain(answer, view, history, ledger)
        elif view.current() is None and not self._about_knowledge(intent, turn):
            answer.claims.append(self._stated("no_study"))
        else:
            self._from_evidence(answer, view, turn)
        self._descriptions(answer, turn)
        for failure in view.failures:
            key = "refused_image" if failure.code == "qc_refused" else "tool_failed"
            answer.limitations.append(
                self.text[key].format(
                    reason=failure.message, tool=failure.tool, message=failure.message
                )  # fmt: skip
            )
        if view.failures and not answer.claims:  # never an empty answer: say why
            answer.claims.append(self._stated("step_failed"))
        if view.understanding.ignored:
            answer.limitations.append(self.text["ignored_instructions"])
        self._limitations(answer, turn)
        self._domain_shift(answer, view)
        self._answer_first(answer, view, turn)
        return answer

    def _answer_first(self, answer: Answer, view: TurnView, turn: list[Evidence]) -> None:
        """The direct answer as the first claim; the plain sentence it restates is dropped."""
        if view.current() is None and view.understanding.target.kind not in (
            "unsupported", "identity", "attribute"
        ):
            return
        written = self.direct.write(view, turn)
        if written is None:
            return
        claim, summary = written
        subject = "Cardiomegaly" if summary.target == "heart_size" else summary.subject
        restated = {self.direct.finding_sentence(r) for e in turn if e.tool == "classify_findings"
                    for r in e.values.get("findings", [])
                    if r["name"] == subject}  # fmt: skip
        # "Possibly: compared with the prior study, X may have changed ..." restates the
        # comparison's own sentence, capitalised: the case does not make it a second claim.
        answered = claim.text.lower()
        answer.claims = [claim, *(c for c in answer.claims
                                  if c.text not in restated and c.text.lower() not in answered)]
        answer.direct = [summary]

    @staticmethod
    def _about_knowledge(intent: Intent, turn: list[Evidence]) -> bool:
        knowledge = {"search_guidelines", "knowledge_graph", "similar_cases"}
        return intent in ("guideline", "management", "differential", "similar_cases") or any(
            e.tool in knowledge for e in turn
        )

    def _from_evidence(self, answer: Answer, view: TurnView, turn: list[Evidence]) -> None:
        intent = view.understanding.intent
        writers = {
            "localize_finding": self._locations, "measure": self._measure,
            "segment_anatomy": self._anatomy, "segment_region": self._region,
            "knowledge_graph": self._graph, "similar_cases": self._cases,
            "search_guidelines": self._guideline, "image_info": self._image_info,
        }  # fmt: skip
        primary = PRIMARY.get(intent)
        order = [primary] if primary else []
        order += [tool for tool in writers if tool != primary]
        if intent == "compare_prior" or any(e.tool == "compare_studies" for e in turn):
            self._compare(answer, view, turn)
        elif primary is None:  # findings questions, open reads and reports
            self._findings(answer, view, turn)
        else:
            self._findings_context(answer, view, turn)
        produced = {e.tool for e in turn}
        for tool in order:
            if tool in produced:
                claims = writers[tool](view, [e for e in turn if e.tool == tool])
                # The intent's own answer comes first; context from reused evidence follows.
                at = 0 if tool == primary else len(answer.claims)
                answer.claims[at:at] = claims
            elif tool == primary and not any(f.tool == tool for f in view.failures):
                # (a tool that ran and failed is explained by its failure, under limitations)
                missing = self._missing(view, tool)
                if missing is not None and "compare_studies" not in produced:
                    answer.claims.insert(0, missing)
        for evidence in turn:
            if evidence.tool == "measure":
                answer.limitations.extend(evidence.values.get("notes", []))

    def _missing(self, view: TurnView, tool: str) -> Claim | None:
        """The fixed statement for a question whose tool produced nothing this turn."""
        if tool not in view.available_tools:
            known = {"search_guidelines": "no_guideline_tool", "measure": "no_measure_tool"}
            return self._stated(known.get(tool, "tool_unavailable"))
        if tool == "search_guidelines":
            return self._stated("no_guideline_match")
        if tool == "segment_region":
            return self._stated("no_region")
        if tool in ("knowledge_graph", "similar_cases"):
            return self._stated("no_focus")
        if tool == "localize_finding":
            return self._stated("nothing_to_localize")
        return None  # installed but not needed this turn (e.g. a comparison answered it)

    def _stated(self, key: str) -> Claim:
        return Claim(text=self.text[key], evidence=[], certainty="stated")

    def _finding_claim(self, row: dict[str, Any], evidence: Evidence) -> Claim:
        certainty = row_certainty(row)
        return Claim(text=self.direct.finding_sentence(row), evidence=[evidence.id],
                     certainty=certainty)  # fmt: skip

    def _classification(self, view: TurnView, turn: list[Evidence]) -> Evidence | None:
        current = view.current()
        return next(
            (e for e in turn if e.tool == "classify_findings" and current is not None
             and e.inputs.get("study_id") == current.study_id), None,
        )  # fmt: skip

    def _table(self, answer: Answer, view: TurnView, turn: list[Evidence]) -> Evidence | None:
        """The findings table from the current study's classification in this turn, if any."""
        classification = self._classification(view, turn)
        if classification is not None:
            answer.findings = [
                FindingRow(name=r["name"], probability=r["probability"], status=r["status"],
                           evidence=[classification.id])
                for r in classification.values.get("findings", [])
            ]  # fmt: skip
        return classification

    def _findings(self, answer: Answer, view: TurnView, turn: list[Evidence]) -> None:
        """A question about named findings answers those first, adding only an urgent finding
        above its operating point; an open read ranks what is above its operating point, then
        one line of what was also considered."""
        slots = view.understanding.slots
        for phrase in slots.unsupported_findings:
            answer.claims.append(
                Claim(
                    text=self.text["not_assessed"].format(finding=phrase),
                    evidence=[],
                    certainty="stated",
                )  # fmt: skip
            )
        classification = self._table(answer, view, turn)
        if classification is None:
            return
        rows = classification.values.get("findings", [])
        above = sorted((r for r in rows if r["status"] == "present"),
                       key=lambda r: -r["probability"])  # fmt: skip
        named = [r for r in rows if r["name"] in slots.findings]
        focused = bool(named) and view.understanding.intent not in ("detect_findings", "report")
        if focused:
            answer.claims.extend(self._finding_claim(row, classification) for row in named)
            urgent = [r for r in above if r["name"] in URGENT and r not in named][:1]
            answer.claims.extend(self._finding_claim(row, classification) for row in urgent)
            return
        if not above:
            shifted = any(r.get("shifted") for r in rows)  # the guard flagged the image
            answer.claims.append(Claim(text=self.text["no_call" if shifted else "no_positive"],
                                       evidence=[classification.id],
                                       certainty="possible" if shifted else "unlikely"))
        answer.claims.extend(self._finding_claim(r, classification) for r in above[:READ_FINDINGS])
        stated = {r["name"] for r in above[:READ_FINDINGS]}
        # A report also covers what the conversation discussed.
        answer.claims.extend(self._finding_claim(r, classification) for r in named
                             if r["name"] not in stated)  # fmt: skip
        stated |= {r["name"] for r in named}
        considered = sorted([*above[READ_FINDINGS:], *(
            r for r in rows if r["status"] == "indeterminate" and r["name"] not in stated
        )], key=lambda r: -r["probability"])  # fmt: skip
        if considered:  # one sentence, not one claim each: an open read stays readable
            items = ", ".join(f"{display(r['name'])} ({r['probability']:.2f})" for r in considered)
            answer.claims.append(
                Claim(text=self.text["also_considered"].format(items=items),
                      evidence=[classification.id], certainty="possible")  # fmt: skip
            )

    def _findings_context(self, answer: Answer, view: TurnView, turn: list[Evidence]) -> None:
        """For a question answered by another tool: the named findings' probabilities when the
        classification is part of this turn (e.g. "where is it?" reuses it)."""
        classification = self._table(answer, view, turn)
        if classification is None or not view.understanding.slots.findings:
            return
        rows = [r for r in classification.values.get("findings", [])
                if r["name"] in view.understanding.slots.findings]  # fmt: skip
        answer.claims.extend(self._finding_claim(row, classification) for row in rows)

    def _locations(self, view: TurnView, evidence: list[Evidence]) -> list[Claim]:
        return [self._location_claim(e) for e in evidence if e.values.get("regions")]

    def _anatomy(self, view: TurnView, evidence: list[Evidence]) -> list[Claim]:
        claims = []
        for item in evidence:
            parts = [self.text["structure"].format(name=s["name"], area=_area(s["area"]),
                                                   method=s["method"])
                     for s in item.values.get("structures", [])]  # fmt: skip
            if parts:
                text = self.text["anatomy"].format(items="; ".join(parts))
                claims.append(Claim(text=text, evidence=[item.id], certainty="stated"))
        return claims

    def _region(self, view: TurnView, evidence: list[Evidence]) -> list[Claim]:
        claims = []
        for item in evidence:
            v = item.values
            x, y, w, h = v["box"]
            text = self.text["region"].format(area=_area(v["area"]), x=x, y=y, w=w, h=h,
                                              score=v["score"])  # fmt: skip
            claims.append(Claim(text=text, evidence=[item.id], certainty="stated"))
        return claims

    def _graph(self, view: TurnView, evidence: list[Evidence]) -> list[Claim]:
        steps_first = view.understanding.intent == "management"
        return [Claim(text=text, evidence=[item.id], certainty="stated")
                for item in evidence
                for text in graph_claims(item.values, steps_first=steps_first)]  # fmt: skip

    def _cases(self, view: TurnView, evidence: list[Evidence]) -> list[Claim]:
        claims = []
        for item in evidence:
            for case in item.values.get("cases", [])[:SIMILAR_CASES]:
                labels = ", ".join(case["labels"]) or "no finding labelled"
                text = self.text["similar_case"][case["source"]].format(
                    case=case["case_id"], similarity=case["similarity"], labels=labels
                )  # fmt: skip
                claims.append(Claim(text=text, evidence=[item.id], certainty="stated"))
            if not claims:
                claims.append(Claim(text=self.text["no_similar_case"], evidence=[item.id],
                                    certainty="stated"))  # fmt: skip
        return claims

    def _descriptions(self, answer: Answer, turn: list[Evidence]) -> None:
        """A generative description counts only where the classifier agrees on the same study."""
        for described in (e for e in turn if e.tool == "describe_image"):
            study = described.inputs.get("study_id")
            rows = {row["name"]: (row, e) for e in turn
                    if e.tool == "classify_findings" and e.inputs.get("study_id") == study
                    for row in e.values.get("findings", [])}  # fmt: skip
            mentioned = self.vocabulary.findings_in(described.values.get("text", ""))
            confirmed = [f for f in mentioned
                         if f in rows and row_certainty(rows[f][0]) != "unlikely"]  # fmt: skip
            for finding in confirmed:
                row, classification = rows[finding]
                certainty = row_certainty(row)
                text = self.text["described_confirmed"].format(
                    finding=finding, certainty=certainty, probability=row["probability"],
                )  # fmt: skip
                answer.claims.append(Claim(text=text, evidence=[classification.id, described.id],
                                           certainty=certainty))  # fmt: skip
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

    def _guideline(self, view: TurnView, evidence: list[Evidence]) -> list[Claim]:
        search = evidence[0]
        passages = search.values.get("passages", [])
        if search.values.get("weak") or not passages:
            return [self._stated("no_guideline_match")]
        claims = []
        for passage in passages[:GUIDELINE_PASSAGES]:
            quote = first_sentences(passage["text"])
            source = self.text["guideline_source"].format(
                body=passage["citation"]["issuing_body"], year=passage["citation"]["year"],
                document=passage["citation"]["document"],
            )  # fmt: skip
            claims.append(Claim(text=f"{source}: {quote}", evidence=[search.id],
                                certainty="stated"))  # fmt: skip
        return claims

    def _measure(self, view: TurnView, evidence: list[Evidence]) -> list[Claim]:
        measured = evidence[0]
        v = measured.values

        def length(line: dict[str, Any]) -> str:
            mm = line["length"]["mm"]
            return f"{mm:.1f} mm" if mm is not None else f"{line['length']['pixels']} px"

        texts = [
            self.text["ctr"].format(
                ratio=v["cardiothoracic_ratio"], heart=length(v["heart_line"]),
                thorax=length(v["thorax_line"]), view=film(v), reading=v["ctr_reading"],
                threshold=v["pa_threshold"],
            ),
            self.text["lung_areas"].format(
                right=_area(v["right_lung_area"]), left=_area(v["left_lung_area"]),
                ratio=v["lung_area_ratio_right_to_left"] or 0,
            ),
        ]  # fmt: skip
        return [Claim(text=t, evidence=[measured.id], certainty="stated") for t in texts]

    def _image_info(self, view: TurnView, evidence: list[Evidence]) -> list[Claim]:
        claims = []
        for item in evidence:
            v = item.values
            text = self.text["image_info"].format(
                width=v["width"], height=v["height"], modality=v["modality"], view=v["view"],
                qc="passed" if v["qc_ok"] else "failed",
            )  # fmt: skip
            claims.append(Claim(text=text, evidence=[item.id], certainty="stated"))
        return claims

    def _compare(self, answer: Answer, view: TurnView, turn: list[Evidence]) -> None:
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
                    certainty = row_certainty(row)
                    text = self.text["prior_finding"].format(
                        role=role, finding=display(row["name"]), probability=row["probability"],
                        certainty=certainty,
                    )  # fmt: skip
                    answer.claims.append(
                        Claim(text=text, evidence=[evidence.id], certainty=certainty)
                    )

    def _changes(self, answer: Answer, view: TurnView, comparison: Evidence) -> None:
        wanted = set(view.understanding.slots.findings)
        rows = comparison.values.get("findings", [])
        steady = []
        for row in rows:
            named = row["name"] in wanted
            if row["verdict"] == "unchanged" and not named:
                if row["status"] != "absent" or row["prior_probability"] >= row["threshold"]:
                    steady.append(display(row["name"]))
                continue
            if wanted and not named:
                continue
            text = self.text["change"][row["verdict"]].format(
                finding=display(row["name"]), prior=row["prior_probability"],
                now=row["probability"], margin=row["margin"],
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

    def _explain(self, answer: Answer, view: TurnView, history: list[Message],
                 ledger: dict[str, Evidence]) -> None:  # fmt: skip
        """What the previous answer rests on; when that answer quoted only general knowledge
        ("how sure are you?" after next steps), what the findings in focus rest on."""
        previous = next((m.answer for m in reversed(history)
                         if m.role == "assistant" and m.answer is not None), None)  # fmt: skip
        cited = [c for c in previous.claims if c.evidence] if previous else []
        if all(ledger[c.evidence[0]].kind in ("guideline", "case") for c in cited):
            cited = self._focus_claims(view, ledger) or cited
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

    def _focus_claims(self, view: TurnView, ledger: dict[str, Evidence]) -> list[Claim]:
        """The findings in focus as the latest classification of the current study states them."""
        current = view.current()
        classification = next(
            (e for e in reversed(list(ledger.values())) if e.tool == "classify_findings"
             and current is not None and e.inputs.get("study_id") == current.study_id), None,
        )  # fmt: skip
        if classification is None:
            return []
        wanted = view.focus.finding_names()
        return [self._finding_claim(row, classification)
                for row in classification.values.get("findings", []) if row["name"] in wanted]

    @staticmethod
    def _domain_shift(answer: Answer, view: TurnView) -> None:
        """Every answer about a study the domain-shift guard flagged says so, whichever tools
        this turn ran (the guard's verdict is in the study's classification or image facts)."""
        current = view.current()
        if current is None:
            return
        checks = [e.values["domain"] for e in view.ledger
                  if e.inputs.get("study_id") == current.study_id and e.values.get("domain")]
        if checks and checks[-1].get("out_of_distribution"):
            text = DomainCheck.model_validate(checks[-1]).limitation()
            answer.limitations = [text, *(t for t in answer.limitations if t != text)]

    def _limitations(self, answer: Answer, turn: list[Evidence]) -> None:
        for evidence in turn:
            for item in evidence.values.get("limitations", []):
                if item not in answer.limitations:
                    answer.limitations.append(item)
        if self.text["decision_support"] not in answer.limitations:
            answer.limitations.append(self.text["decision_support"])


def _area(value: dict[str, Any]) -> str:
    mm2 = value["mm2"]
    return f"{mm2:.1f} mm²" if mm2 is not None else f"{value['pixels']} px"
