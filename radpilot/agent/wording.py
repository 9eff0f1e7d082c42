"""The answer's wording, shared by the composer (who writes it) and the verifier (who checks it).

Certainty words follow the calibrated probability and the operating point (decision threshold)
chosen on validation data, never the distance to the threshold alone:

| calibrated probability | against the operating point | word     |
|------------------------|-----------------------------|----------|
| >= 0.5                 | at or above                 | likely   |
| < 0.5                  | at or above                 | possible |
| any                    | below                       | unlikely |

So a pneumothorax at probability 0.22 with an operating point of 0.06 is "possible", not
"likely": a clinician reads "likely" as a positive call.
"""

from __future__ import annotations

from typing import Any

from radpilot import prompts
from radpilot.agent.types import Certainty

LIKELY_FROM = 0.5
# The verifier's reading of a sentence's direction word, per certainty.
DIRECTION: dict[Certainty, str] = {
    "likely": "present",
    "possible": "uncertain",
    "unlikely": "absent",
}
STATED_KEYS = ("no_prior", "prior_without_tool", "no_measure_tool", "no_guideline_tool",
               "no_guideline_match", "out_of_scope", "explain_none", "no_study",
               "no_focus", "no_region", "tool_unavailable", "nothing_to_localize")  # fmt: skip
GRAPH_ITEMS = 5  # a graph claim lists at most this many differentials or steps


def certainty_of(probability: float, threshold: float) -> Certainty:
    """The certainty word of one finding (the table above)."""
    if probability < threshold:
        return "unlikely"
    return "likely" if probability >= LIKELY_FROM else "possible"


def row_certainty(row: dict[str, Any]) -> Certainty:
    return certainty_of(float(row["probability"]), float(row["threshold"]))


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
