"""The knowledge graph: finding → differential diagnosis → recommended next step.

Built from the `links` of the guideline notes, so every edge names the notes it comes from and
the graph can never say more than the corpus. Differentials with the same name in several notes
are one node; a next step reached from several notes keeps all of them as sources.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from functools import cache
from typing import Literal

from pydantic import BaseModel, Field

from radpilot.core.contracts import Citation
from radpilot.core.errors import RadpilotError
from radpilot.core.findings import NIH_FINDINGS
from radpilot.knowledge.notes import Note, packaged_notes

NodeKind = Literal["finding", "differential", "next_step"]
Relation = Literal["differential", "next_step"]


class UnknownFindingError(RadpilotError):
    code = "unknown_finding"


class Node(BaseModel):
    id: str
    kind: NodeKind
    label: str


class Edge(BaseModel):
    source: str
    target: str
    relation: Relation
    notes: list[str]


class Step(BaseModel):
    text: str
    notes: list[str]


class Differential(BaseModel):
    name: str
    notes: list[str]
    next_steps: list[Step] = Field(default_factory=list)


class Neighbourhood(BaseModel):
    finding: str
    differentials: list[Differential]
    next_steps: list[Step] = Field(description="steps linked to the finding itself")
    citations: dict[str, Citation] = Field(description="note id -> citation, for every note used")


def node_id(kind: NodeKind, label: str) -> str:
    return f"{kind}:{label.strip().lower()}"


def canonical_finding(name: str) -> str:
    """'pleural effusion', 'Pleural_Thickening', 'pleural thickening' → the NIH spelling."""
    wanted = name.strip().lower().replace("_", " ")
    aliases = {"pleural effusion": "Effusion", "oedema": "Edema", "pulmonary oedema": "Edema"}
    if wanted in aliases:
        return aliases[wanted]
    for finding in NIH_FINDINGS:
        if finding.lower().replace("_", " ") == wanted:
            return finding
    raise UnknownFindingError(f"unknown finding {name!r}; known: {', '.join(NIH_FINDINGS)}")


class KnowledgeGraph:
    def __init__(self, notes: Sequence[Note]) -> None:
        self.nodes: dict[str, Node] = {}
        self.edges: dict[tuple[str, str, Relation], Edge] = {}
        self.citations = {note.id: note.citation for note in notes}
        for note in notes:
            for link in note.links:
                finding = self._node("finding", canonical_finding(link.finding))
                if link.differential:
                    differential = self._node("differential", link.differential)
                    self._edge(finding, differential, "differential", note.id)
                    if link.next_step:
                        step = self._node("next_step", link.next_step)
                        self._edge(differential, step, "next_step", note.id)
                elif link.next_step:
                    self._edge(finding, self._node("next_step", link.next_step), "next_step",
                               note.id)  # fmt: skip

    def _node(self, kind: NodeKind, label: str) -> str:
        key = node_id(kind, label)
        self.nodes.setdefault(key, Node(id=key, kind=kind, label=label.strip()))
        return key

    def _edge(self, source: str, target: str, relation: Relation, note_id: str) -> None:
        edge = self.edges.setdefault(
            (source, target, relation),
            Edge(source=source, target=target, relation=relation, notes=[]),
        )
        if note_id not in edge.notes:
            edge.notes.append(note_id)

    def _out(self, source: str, relation: Relation) -> list[Edge]:
        return [e for (s, _, r), e in self.edges.items() if s == source and r == relation]

    def neighbourhood(self, finding: str) -> Neighbourhood:
        name = canonical_finding(finding)
        root = node_id("finding", name)
        used: set[str] = set()
        differentials = []
        for edge in self._out(root, "differential"):
            steps = [
                Step(text=self.nodes[s.target].label, notes=s.notes)
                for s in self._out(edge.target, "next_step")
            ]
            used.update(edge.notes, *(s.notes for s in steps))
            differentials.append(
                Differential(
                    name=self.nodes[edge.target].label, notes=edge.notes, next_steps=steps
                )  # fmt: skip
            )
        direct = [Step(text=self.nodes[e.target].label, notes=e.notes)
                  for e in self._out(root, "next_step")]  # fmt: skip
        used.update(*(s.notes for s in direct))
        return Neighbourhood(
            finding=name,
            differentials=sorted(differentials, key=lambda d: (-len(d.notes), d.name)),
            next_steps=direct,
            citations={note_id: self.citations[note_id] for note_id in sorted(used)},
        )

    def to_json(self) -> dict[str, list[dict[str, object]]]:
        return {
            "nodes": [n.model_dump() for n in self.nodes.values()],
            "edges": [e.model_dump() for e in self.edges.values()],
        }


@cache
def packaged_graph() -> KnowledgeGraph:
    """The graph of the corpus shipped with radpilot (built once per process)."""
    return KnowledgeGraph(packaged_notes())


def render_neighbourhood(view: Neighbourhood, max_differentials: int = 6) -> bytes:
    """A small left-to-right picture (PNG): finding → differentials → next steps."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = view.differentials[:max_differentials]
    rows = max(len(shown), 1)
    figure, axes = plt.subplots(figsize=(10, 1.1 + 0.9 * rows), dpi=100)
    axes.set_axis_off()
    axes.set_xlim(0, 10)
    axes.set_ylim(-0.5, rows - 0.5)

    def box(x: float, y: float, text: str, colour: str, width: int) -> None:
        frame = {"boxstyle": "round", "facecolor": colour, "edgecolor": "#555555"}
        axes.text(x, y, textwrap.fill(text, width), ha="center", va="center", fontsize=8,
                  bbox=frame)  # fmt: skip

    middle = (rows - 1) / 2
    box(1.0, middle, view.finding, "#f4c27a", 14)
    for row, differential in enumerate(reversed(shown)):
        axes.annotate("", xy=(3.1, row), xytext=(1.9, middle),
                      arrowprops={"arrowstyle": "->", "color": "#777777"})  # fmt: skip
        box(4.2, row, differential.name, "#a9cbe8", 24)
        if differential.next_steps:
            axes.annotate("", xy=(6.0, row), xytext=(5.4, row),
                          arrowprops={"arrowstyle": "->", "color": "#777777"})  # fmt: skip
            box(8.0, row, differential.next_steps[0].text, "#c8e6b5", 44)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()
