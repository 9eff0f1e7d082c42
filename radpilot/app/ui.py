"""The Gradio chat UI, mounted at `/` of `radpilot serve`.

Chat with a current (and optional prior) study; answers show each claim with its citation
markers, which open to the evidence behind them (tool, model, values); overlays in a gallery;
the findings table; the report with Markdown and FHIR downloads. Progress is streamed from the
agent's events while tools run.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

NOTICE = (
    "**radpilot** reads chest radiographs with specialist tools and cites the evidence for "
    "every statement. **Decision support, not a diagnosis**: a clinician must confirm every "
    "finding."
)
PROGRESS = {
    "understand": "Understanding the question…",
    "plan": "Planning…",
    "verify": "Checking every claim against its evidence…",
}
EXAMPLE_COUNT = 4


def evidence_values_html(evidence: Any) -> str:
    """A compact, readable view of what a piece of evidence says."""
    values = evidence.values
    if isinstance(values.get("findings"), list):
        rows = "".join(
            f"<tr><td>{html.escape(str(r['name']))}</td><td>{r['probability']:.2f}</td>"
            f"<td>{r['threshold']:.2f}</td><td>{html.escape(str(r['status']))}</td></tr>"
            for r in values["findings"]
        )
        return ("<table><tr><th>finding</th><th>probability</th><th>threshold</th>"
                f"<th>status</th></tr>{rows}</table>")  # fmt: skip
    if isinstance(values.get("regions"), list):
        items = "".join(
            f"<li>box {', '.join(f'{v:.0f}' for v in r['box'])} px · patient's "
            f"{html.escape(str(r['side']))} · strength {r['heat']:.2f}</li>"
            for r in values["regions"]
        )
        return (f"<p>{html.escape(str(values.get('finding')))}: probability "
                f"{values.get('probability', 0):.2f}; {html.escape(str(values.get('method')))}"
                f"</p><ul>{items}</ul>")  # fmt: skip
    shown = {k: v for k, v in values.items() if k != "limitations"}
    return f"<pre>{html.escape(json.dumps(shown, indent=1)[:1500])}</pre>"


def evidence_html(evidence: Any) -> str:
    models = ", ".join(f"{m.name} {m.version}" for m in evidence.models) or "no model"
    return (
        f"<details><summary><b>{evidence.id}</b> · {html.escape(evidence.tool)} · "
        f"{html.escape(models)}</summary>{evidence_values_html(evidence)}</details>"
    )


def answer_markdown(answer: Any) -> str:
    if answer.clarification:
        return html.escape(answer.clarification)
    ledger = {e.id: e for e in answer.evidence}
    lines = []
    for claim in answer.claims:
        markers = " ".join(f"<sup>[{i}]</sup>" for i in claim.evidence)
        lines.append(f"- {html.escape(claim.text)} {markers}")
    cited = [ledger[i] for c in answer.claims for i in c.evidence if i in ledger]
    unique = list({e.id: e for e in cited}.values())
    if unique:
        lines.append("\n**Evidence** (open a marker's entry):")
        lines += [evidence_html(e) for e in unique]
    if answer.limitations:
        lines.append("\n<small>" + "<br>".join(html.escape(x) for x in answer.limitations)
                     + "</small>")  # fmt: skip
    return "\n".join(lines)


def findings_rows(answer: Any) -> list[list[Any]]:
    return [[f.name, f.probability, f.status, ", ".join(f.evidence)] for f in answer.findings]


def overlays(answer: Any, agent: Any) -> list[tuple[str, str]]:
    """Pictures for the gallery: overlays and plots (e.g. a knowledge-graph neighbourhood);
    raw masks stay downloadable through the API but would only clutter it."""
    return [
        (str(agent.tools.artefacts.path(a)), f"{e.id}: {e.values.get('finding', e.tool)}")
        for e in answer.evidence
        for a in e.artefacts
        if a.kind in ("overlay", "plot")
    ]


def preview(path: str | None) -> Any:
    """The uploaded file as a greyscale picture (DICOM included), or nothing if unreadable."""
    import numpy as np

    from radpilot.errors import RadpilotError
    from radpilot.tools.dicom import Deidentifier
    from radpilot.tools.imaging import decode_image

    if not path:
        return None
    try:
        image = decode_image(Path(path).read_bytes(), filename=path, max_megapixels=50,
                             deidentifier=Deidentifier(b"preview-only"))  # fmt: skip
    except (RadpilotError, OSError):
        return None
    return (np.clip(image.pixels, 0, 1) * 255).astype(np.uint8)


def build_ui(holder: Any, keys: Any, owners: Any, example_dir: Path | None) -> Any:
    import gradio as gr

    from radpilot.agent.report import render_markdown, to_fhir

    needs_key = bool(keys.names())

    def owner_of(key: str) -> str:
        if not needs_key:
            return "local"
        name = keys.identify(key.strip()) if key else None
        if name is None:
            raise gr.Error("Enter a valid API key (radpilot keys create NAME).")
        return str(name)

    def ensure_session(state: dict[str, Any], owner: str) -> str:
        agent = holder.get()
        if state.get("session_id") is None or state.get("owner") != owner:
            state.update(session_id=agent.new_session(), owner=owner, uploaded={})
            owners.add_session(state["session_id"], owner)
        return str(state["session_id"])

    def attach(state: dict[str, Any], path: str | None, role: str, acquired: str) -> None:
        if not path or state["uploaded"].get(role) == path:
            return
        from datetime import date

        from radpilot.errors import RadpilotError

        when = date.fromisoformat(acquired) if acquired and role == "prior" else None
        try:
            holder.get().add_study(state["session_id"], Path(path).read_bytes(), Path(path).name,
                                   role=role, acquired=when)  # fmt: skip
        except RadpilotError as error:
            raise gr.Error(f"The {role} image was refused: {error.message}") from None
        state["uploaded"][role] = path

    def send(text: str, current: str | None, prior: str | None, prior_date: str, key: str,
             state: dict[str, Any], history: list[dict[str, str]]) -> Iterator[Any]:  # fmt: skip
        from radpilot.errors import RadpilotError

        if not text.strip():
            raise gr.Error("Type a question.")
        try:
            session = ensure_session(state, owner_of(key))
            attach(state, current, "current", "")
            attach(state, prior, "prior", prior_date)
        except RadpilotError as error:
            raise gr.Error(error.message) from None
        agent = holder.get()
        history = [*history, {"role": "user", "content": text},
                   {"role": "assistant", "content": "⏳ Starting…"}]  # fmt: skip
        yield history, state, gr.skip(), gr.skip(), gr.skip(), gr.skip(), ""
        try:
            for event in agent.stream(session, text):
                if event.kind == "tool_start":
                    history[-1]["content"] = f"⏳ Running {event.data['tool']}…"
                elif event.kind in PROGRESS:
                    history[-1]["content"] = "⏳ " + PROGRESS[event.kind]
                else:
                    continue
                yield history, state, gr.skip(), gr.skip(), gr.skip(), gr.skip(), ""
        except RadpilotError as error:
            history[-1]["content"] = f"⚠️ {html.escape(error.message)}"
            yield history, state, gr.skip(), gr.skip(), gr.skip(), gr.skip(), ""
            return
        answer = agent.state(session).answer
        history[-1]["content"] = answer_markdown(answer)
        report = render_markdown(answer)
        exports = Path(agent.settings.state_dir) / "exports" / session
        exports.mkdir(parents=True, exist_ok=True)
        (exports / "report.md").write_text(report)
        fhir = to_fhir(answer, agent.state(session).studies)
        (exports / "report.fhir.json").write_text(json.dumps(fhir, indent=2))
        files = [str(exports / "report.md"), str(exports / "report.fhir.json")]
        yield (history, state, overlays(answer, agent), findings_rows(answer), report, files, "")

    with gr.Blocks(title="radpilot") as ui:
        gr.Markdown("# radpilot — chest radiograph assistant\n" + NOTICE)
        state = gr.State({})
        with gr.Row():
            with gr.Column(scale=1):
                current = gr.File(label="Current study (PNG, JPEG or DICOM)", type="filepath",
                                  elem_id="current-study")  # fmt: skip
                shown = gr.Image(label="Current study", interactive=False, height=300,
                                 elem_id="current-preview")  # fmt: skip
                prior = gr.File(label="Prior study (optional)", type="filepath",
                                elem_id="prior-study")  # fmt: skip
                prior_date = gr.Textbox(label="Prior's date (YYYY-MM-DD), if its file has none")
                key = gr.Textbox(label="API key", type="password", visible=needs_key)
                if example_dir is not None:
                    examples = sorted(example_dir.glob("*.png"))[:EXAMPLE_COUNT]
                    gr.Examples([[str(p)] for p in examples], inputs=[current],
                                label="Example studies (NIH ChestX-ray14)")  # fmt: skip
            with gr.Column(scale=2):
                chat = gr.Chatbot(label="Conversation", height=520, elem_id="chat",
                                  sanitize_html=True)  # fmt: skip
                with gr.Row():
                    question = gr.Textbox(
                        placeholder="e.g. Is there a pleural effusion?",
                        show_label=False,
                        scale=5,
                        elem_id="question",
                    )
                    ask = gr.Button("Ask", variant="primary", scale=1, elem_id="ask")
        with gr.Tabs():
            with gr.Tab("Overlays"):
                gallery = gr.Gallery(label="Heatmaps and boxes", columns=3, height=360,
                                     elem_id="overlays")  # fmt: skip
            with gr.Tab("Findings"):
                table = gr.Dataframe(headers=["finding", "probability", "status", "evidence"],
                                     elem_id="findings")  # fmt: skip
            with gr.Tab("Report"):
                report = gr.Markdown()
                downloads = gr.File(label="Download (Markdown, FHIR JSON)", file_count="multiple")
        inputs = [question, current, prior, prior_date, key, state, chat]
        outputs = [chat, state, gallery, table, report, downloads, question]
        current.change(preview, [current], [shown])
        ask.click(send, inputs, outputs)
        question.submit(send, inputs, outputs)
    return ui
