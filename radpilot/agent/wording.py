"""The answer's wording, shared by the composer (who writes it) and the verifier (who checks it).

Certainty words follow each finding's two operating points, chosen on validation patients and
stored with the model (`radpilot models operating-points`):

| calibrated probability          | status        | word          | a closed question |
|---------------------------------|---------------|---------------|-------------------|
| at or above rule-in (spec 0.90) | present       | likely        | Yes               |
| between rule-out and rule-in    | indeterminate | indeterminate | Possibly          |
| below rule-out (sens 0.90)      | absent        | unlikely      | No                |

A question of normal polarity ("is the heart size normal?") swaps Yes and No.
"""

from __future__ import annotations

from typing import Any, Literal

from radpilot import prompts
from radpilot.agent.types import Certainty, DirectWord, Polarity

HeartSizeBasis = Literal["classifier", "ratio"]  # what decided a heart-size call

# The verifier's reading of a sentence's direction word, per certainty.
DIRECTION: dict[Certainty, str] = {
    "likely": "present",
    "possible": "uncertain",  # what `direction_of` reads from "indeterminate" or "possible"
    "unlikely": "absent",
}
STATED_KEYS = ("no_prior", "prior_without_tool", "no_measure_tool", "no_guideline_tool",
               "no_guideline_match", "out_of_scope", "explain_none", "no_study",
               "no_focus", "no_region", "tool_unavailable", "nothing_to_localize", "identity",
               "off_topic", "cannot_assess_image", "projection_unknown", "step_failed")  # fmt: skip
GRAPH_ITEMS = 5  # a graph claim lists at most this many differentials or steps


_CERTAINTY: dict[str, Certainty] = {"present": "likely", "indeterminate": "possible",
                                    "absent": "unlikely"}  # fmt: skip
# The measured ratio moves a call one step only when it clearly disagrees on a PA film; on an
# AP film the heart is magnified, so the ratio cannot argue for enlargement.
CTR_CLEARLY_ENLARGED = 0.55
CTR_CLEARLY_NORMAL = 0.45
# Where the classifier is indeterminate the measured ratio decides: at or below 0.48 (the usual
# 0.50 limit less the ratio's mean error of 0.02 against the reference CTRs) the heart is not
# enlarged on any film; at or above 0.60 on a film that is not AP it is. Chosen on the
# validation patients' NIH Cardiomegaly labels (271 images, ratios outside `measure`'s
# plausible range left out: Yes/No coverage 0.535 -> 0.679, right 0.828 -> 0.848; test, 418
# images: 0.589 -> 0.730, right 0.846 -> 0.859); a lower upper bound (0.55) answered more
# but was right less often on validation.
CTR_DECIDES_NORMAL = 0.48
CTR_DECIDES_ENLARGED = 0.60


def row_certainty(row: dict[str, Any]) -> Certainty:
    """The certainty word of one finding row: its status against the two operating points."""
    return _CERTAINTY[str(row["status"])]


def answer_word(certainty: Certainty, polarity: Polarity) -> DirectWord:
    """Yes / No / Possibly for a closed question about a finding (the table above)."""
    if certainty == "possible":
        return "possibly"
    found = certainty == "likely"
    return "yes" if found == (polarity == "abnormal") else "no"


def heart_size_call(classifier: Certainty, ratio: float | None, view: str
                    ) -> tuple[Certainty, HeartSizeBasis]:  # fmt: skip
    """Heart size from the classifier's Cardiomegaly call and the measured cardiothoracic ratio
    together, and what decided it: the classifier decides when it is sure, unless a clearly
    disagreeing ratio makes it indeterminate; when it is indeterminate, a clear ratio decides
    (never "enlarged" from an AP film, whose heart is magnified)."""
    if ratio is None:
        return classifier, "classifier"
    not_ap = view.upper() != "AP"
    if classifier == "possible":
        if ratio <= CTR_DECIDES_NORMAL:
            return "unlikely", "ratio"
        if ratio >= CTR_DECIDES_ENLARGED and not_ap:
            return "likely", "ratio"
    if classifier == "unlikely" and ratio >= CTR_CLEARLY_ENLARGED and not_ap:
        return "possible", "classifier"
    if classifier == "likely" and ratio < CTR_CLEARLY_NORMAL:
        return "possible", "classifier"
    return classifier, "classifier"


def heart_size_certainty(classifier: Certainty, ratio: float | None, view: str) -> Certainty:
    return heart_size_call(classifier, ratio, view)[0]


def film(measured: dict[str, Any]) -> str:
    """A measurement's projection as the answer names it: "AP", or "AP (estimated by the
    projection model)" when the file does not record it."""
    view = str(measured.get("view", "UNKNOWN"))
    return f"{view} (estimated by the projection model)" if (
        measured.get("view_source") == "model") else view  # fmt: skip


def display(finding: str) -> str:
    """A finding as a clinician writes it (Pleural_Thickening -> Pleural thickening)."""
    return finding.replace("_", " ").capitalize() if "_" in finding else finding


def zone(y_centre: float, height: int) -> str:
    fraction = y_centre / height
    return "upper zone" if fraction < 0.4 else "mid zone" if fraction < 0.6 else "lower zone"


def lung_findings() -> list[str]:
    """The findings "are the lungs clear?" is about (prompts/targets.yaml)."""
    found: list[str] = prompts.load("targets")["lung_findings"]
    return found


def templates() -> dict[str, Any]:
    loaded: dict[str, Any] = prompts.load("composer")
    return loaded


def stated_texts() -> set[str]:
    """Every fixed sentence the composer may write without citing evidence."""
    text = templates()
    categories: list[str] = list(prompts.load("targets")["unsupported"])
    return ({text[key] for key in STATED_KEYS}
            | {text["not_assessed"].format(finding=c) for c in categories}
            | {text["attribute_unknown"].format(attribute=a) for a in ("sex", "age")}
            | {prompts.load("targets")["clarification"]})  # fmt: skip


def graph_claims(values: dict[str, Any], *, steps_first: bool = False) -> list[str]:
    """The sentences a knowledge-graph result supports: its differentials and next steps,
    each item copied from the graph, with the issuing bodies of the notes they come from.
    The composer writes them and the verifier accepts a graph claim only if it is one of them."""
    text = templates()
    citations: dict[str, Any] = values.get("citations", {})
    finding = str(values.get("finding", "")).replace("_", " ")

    def sources(notes: list[str]) -> str:
        cited = [citations[n] for n in dict.fromkeys(notes) if n in citations]
        return "; ".join(dict.fromkeys(f"{c.get('issuing_body') or c['document']} "
                                       f"({c.get('year') or 'undated'})" for c in cited))

    differentials = values.get("differentials", [])[:GRAPH_ITEMS]
    steps = [(s["text"], s["notes"]) for s in values.get("next_steps", [])]
    if not steps:  # steps linked to the differentials instead, named by differential
        steps = [(f"{d['name']}: {s['text']}", s["notes"]) for d in values.get("differentials", [])
                 for s in d.get("next_steps", [])]  # fmt: skip
    steps = steps[:GRAPH_ITEMS]
    claims = []
    if differentials:
        claims.append(text["graph_differential"].format(
            finding=finding, items="; ".join(d["name"] for d in differentials),
            sources=sources([n for d in differentials for n in d["notes"]]),
        ))  # fmt: skip
    if steps:
        claims.append(text["graph_next_steps"].format(
            finding=finding, items="; ".join(t for t, _ in steps),
            sources=sources([n for _, notes in steps for n in notes]),
        ))  # fmt: skip
    return claims[::-1] if steps_first else claims
