"""The Gradio chat UI, mounted at `/` of `radpilot serve`.

Chat with a current (and optional prior) study; answers show each claim with its citation
markers, which open to the evidence behind them (tool, model, values); overlays in a gallery;
the findings table; the report with Markdown and FHIR downloads. Progress is streamed from the
agent's events while tools run.

The UI follows the REST API's access policy (`radpilot.app.access`): the same keys and rate
limit, conversations owned by the key that started them. Gradio serves only the example
studies and the files the UI hands out (`UiFiles`), never the state dir; an uploaded original
is deleted from Gradio's upload folder once it has been ingested (de-identified).
"""

from __future__ import annotations

import html
import json
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from radpilot.core.notice import DECISION_SUPPORT

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

NOTICE = (
    "**radpilot** reads chest radiographs with specialist tools and cites the evidence for "
    f"every statement. **{DECISION_SUPPORT}**"
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
            f"<td>{r.get('rule_out', r['threshold']):.2f}</td>"
            f"<td>{r.get('rule_in', r['threshold']):.2f}</td>"
            f"<td>{html.escape(str(r['status']))}</td></tr>"
            for r in values["findings"]
        )
        return ("<table><tr><th>finding</th><th>probability</th><th>rule-out</th>"
                f"<th>rule-in</th><th>status</th></tr>{rows}</table>")  # fmt: skip
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


class UiFiles:
    """What the UI hands to the browser (overlay copies, report downloads): one folder per
    session inside Gradio's upload folder, which Gradio serves without copying, so removing a
    session's folder removes every copy the browser was given. A random folder per turn keeps
    the paths unguessable even to someone who knows the session id."""

    def __init__(self, upload_folder: Path | None = None) -> None:
        if upload_folder is None:
            from gradio.utils import get_upload_folder

            upload_folder = Path(get_upload_folder())
        self.uploads = upload_folder.resolve()
        self.root = self.uploads / "radpilot"

    def turn_folder(self, session_id: str) -> Path:
        folder = self.root / session_id / secrets.token_urlsafe(16)
        folder.mkdir(parents=True, mode=0o700)
        return folder

    def remove(self, session_id: str) -> None:
        shutil.rmtree(self.root / session_id, ignore_errors=True)

    def discard_upload(self, path: str) -> None:
        """Delete a file the browser uploaded (the original, with its identifiers) once it has
        been ingested; files anywhere else are not the UI's to delete."""
        resolved = Path(path).resolve()
        if resolved.is_relative_to(self.uploads) and not resolved.is_relative_to(self.root):
            resolved.unlink(missing_ok=True)


def overlays(answer: Any, agent: Any, folder: Path) -> list[tuple[str, str]]:
    """Pictures for the gallery, copied into the turn's folder: overlays and plots (e.g. a
    knowledge-graph neighbourhood); raw masks stay downloadable through the API but would
    only clutter it."""
    shown = []
    for evidence in answer.evidence:
        for artefact in evidence.artefacts:
            if artefact.kind in ("overlay", "plot"):
                copy = folder / f"{artefact.id}.png"
                shutil.copyfile(agent.tools.artefacts.path(artefact), copy)
                caption = f"{evidence.id}: {evidence.values.get('finding', evidence.tool)}"
                shown.append((str(copy), caption))
    return shown


def write_exports(report: str, answer: Any, studies: Any, folder: Path) -> list[str]:
    """The answer's report (`report`, its Markdown) and a FHIR DiagnosticReport, for
    download."""
    from radpilot.agent.report import to_fhir

    (folder / "report.md").write_text(report)
    (folder / "report.fhir.json").write_text(json.dumps(to_fhir(answer, studies), indent=2))
    return [str(folder / "report.md"), str(folder / "report.fhir.json")]


def display_pixels(pixels: Any) -> Any:
    """Pixels in [0, 1] as an 8-bit picture for the browser."""
    import numpy as np

    return (np.clip(pixels, 0, 1) * 255).astype(np.uint8)


def preview(path: str | None) -> Any:
    """The uploaded file as a greyscale picture (DICOM included), or nothing if unreadable."""
    from radpilot.core.errors import RadpilotError
    from radpilot.tools.imaging import read_pixels

    if not path:
        return None
    try:
        pixels = read_pixels(Path(path))  # shown only, never stored: ingest de-identifies
    except (RadpilotError, OSError):
        return None
    return display_pixels(pixels)


def study_choices(studies: list[Any]) -> list[tuple[str, str]]:
    """Dropdown entries for PACS studies: what a reader recognises, and the UID as value."""
    return [(f"{s.study_date or 'undated'} · {'/'.join(s.modalities) or '?'} · "
             f"accession {s.accession_number or '-'}", s.study_uid) for s in studies]  # fmt: skip


def worklist_rows(worklist: Any) -> list[list[Any]]:
    return [[i.rank, i.study_date or "", i.accession_number or "", i.urgency, i.reason]
            for i in worklist.items]  # fmt: skip


def build_ui(
    holder: Any,
    access: Any,
    files: UiFiles,
    forget: Callable[[str], None],
    example_dir: Path | None,
    pacs: Any = None,
) -> Any:
    """The chat UI. `access`: the interfaces' `AccessPolicy`; `forget`: deletes a session
    everywhere (agent, UI files, ownership), as the REST API's DELETE does; `pacs`: a
    `(PacsClient, PacsLinks | None)` pair when a PACS is configured, which adds a PACS search
    next to upload and a Worklist tab."""
    import gradio as gr

    from radpilot.agent.report import render_markdown
    from radpilot.core.errors import RadpilotError

    needs_key = bool(access.keys.names())

    def session_of(state: dict[str, Any], key: str) -> str:
        """The conversation of this browser tab, started (and owned by the key) on first use."""
        owner = access.caller(key)
        agent = holder.get()
        if state.get("session_id") is None or state.get("owner") != owner:
            session_id = access.new_session(owner, agent.new_session())
            state.update(session_id=session_id, owner=owner, uploaded={})
        try:
            return str(access.session(owner, state["session_id"]))
        except RadpilotError:
            state.clear()  # deleted elsewhere: the next question starts a new conversation
            raise RadpilotError("this conversation was deleted; ask again to start a new one",
                                code="unknown_session") from None  # fmt: skip

    def attach(state: dict[str, Any], path: str | None, role: str, acquired: str) -> None:
        if not path or state["uploaded"].get(role) == path:
            return
        from datetime import date

        try:
            when = date.fromisoformat(acquired) if acquired and role == "prior" else None
        except ValueError:
            raise RadpilotError(f"The prior's date {acquired!r} is not YYYY-MM-DD.") from None
        try:
            holder.get().add_study(state["session_id"], Path(path).read_bytes(), Path(path).name,
                                   role=role, acquired=when)  # fmt: skip
        except RadpilotError as error:
            raise RadpilotError(f"The {role} image was refused: {error.message}") from None
        state["uploaded"][role] = path
        files.discard_upload(path)

    def send(text: str, current: str | None, prior: str | None, prior_date: str, key: str,
             state: dict[str, Any], history: list[dict[str, str]]) -> Iterator[Any]:  # fmt: skip
        if not text.strip():
            raise gr.Error("Type a question.")
        try:
            session = session_of(state, key)
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
                access.record_artefacts(session, event)
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
        turn = agent.state(session)
        answer = turn.answer
        history[-1]["content"] = answer_markdown(answer)
        folder = files.turn_folder(session)
        report = render_markdown(answer)
        downloads = write_exports(report, answer, turn.studies, folder)
        yield (history, state, overlays(answer, agent, folder), findings_rows(answer), report,
               downloads, "")  # fmt: skip

    def find(patient_id: str, key: str) -> Any:
        from pydantic import ValidationError

        from radpilot.pacs.client import PacsQuery

        try:
            access.caller(key)
            studies = pacs[0].find_studies(PacsQuery(patient_id=patient_id))
        except ValidationError:
            raise gr.Error("Type the exact patient id (no wildcards).") from None
        except RadpilotError as error:
            raise gr.Error(error.message) from None
        if not studies:
            gr.Info("No CR/DX study of this patient in the PACS.")
        choices = study_choices(studies)
        return gr.update(choices=choices, value=choices[0][1] if choices else None)

    def open_study(study_uid: str | None, key: str, state: dict[str, Any]) -> Any:
        """Pull the chosen PACS study (and its latest prior) into this tab's conversation."""
        from radpilot.app.pacs import session_ingest
        from radpilot.pacs.pull import PullRequest, pull

        if not study_uid:
            raise gr.Error("Search the PACS and choose a study first.")
        try:
            session = session_of(state, key)
            agent = holder.get()
            result = pull(pacs[0], PullRequest(study_uid=study_uid),
                          session_ingest(agent, session, pacs[1]))  # fmt: skip
        except RadpilotError as error:
            raise gr.Error(error.message) from None
        gr.Info(f"Study of {result.current.pacs_date or 'unknown date'} opened; {result.note}.")
        return display_pixels(agent.tools.studies.pixels(result.current.study_id)), state

    tracker = gr.Progress()  # Gradio finds it as a default and reports through it

    def build_worklist(date_from: str, date_to: str, key: str,
                       progress: Any = tracker) -> Any:  # fmt: skip
        from datetime import date

        from pydantic import ValidationError

        from radpilot.app.triage import pacs_sources, triage
        from radpilot.pacs.client import PacsQuery

        try:
            access.caller(key)
            query = PacsQuery(date_from=date.fromisoformat(date_from.strip()),
                              date_to=date.fromisoformat(date_to.strip()), limit=200)  # fmt: skip
            sources = pacs_sources(pacs[0], query)
        except (ValueError, ValidationError):
            raise gr.Error("Give two dates (YYYY-MM-DD), at most 31 days apart.") from None
        except RadpilotError as error:
            raise gr.Error(error.message) from None
        worklist = triage(sources, holder.get().tools, progress=lambda done: progress(
            (done, len(sources)), desc="Classifying studies"))  # fmt: skip
        choices = [(f"{i.rank}. {i.urgency} · {i.study_date or 'undated'} · accession "
                    f"{i.accession_number or '-'}", i.source) for i in worklist.items]  # fmt: skip
        return worklist_rows(worklist), gr.update(choices=choices,
                                                  value=choices[0][1] if choices else None)

    def delete(key: str, state: dict[str, Any]) -> Any:
        try:
            owner = access.caller(key)  # like every request: the key and its rate limit
            if state.get("session_id") is not None:
                forget(access.session(owner, state["session_id"]))
        except RadpilotError as error:
            raise gr.Error(error.message) from None
        state.clear()
        gr.Info("The conversation, its studies, overlays and reports were deleted.")
        return [], state, [], None, "", None

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
                forget_button = gr.Button("Delete this conversation", variant="stop",
                                          elem_id="delete")  # fmt: skip
                if pacs is not None:
                    with gr.Accordion("From the PACS", open=True):
                        patient = gr.Textbox(label="Patient id (exact)", elem_id="pacs-patient")
                        search = gr.Button("Search the PACS", elem_id="pacs-search")
                        found = gr.Dropdown(label="CR/DX studies, newest first", choices=[],
                                            elem_id="pacs-studies")  # fmt: skip
                        opened = gr.Button("Open with its latest prior", elem_id="pacs-open")
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
            if pacs is not None:
                with gr.Tab("Worklist"):
                    gr.Markdown("New CR/DX studies ranked: pneumothorax, effusion, other "
                                "findings, not assessable, no finding; each by probability. "
                                "The ranking orders reading; it rules nothing out.")  # fmt: skip
                    with gr.Row():
                        worklist_from = gr.Textbox(label="From (YYYY-MM-DD)",
                                                   elem_id="worklist-from")  # fmt: skip
                        worklist_to = gr.Textbox(label="To (YYYY-MM-DD)", elem_id="worklist-to")
                        build = gr.Button("Build the worklist", elem_id="worklist-build")
                    ranked = gr.Dataframe(headers=["rank", "date", "accession", "urgency",
                                                   "reason"], elem_id="worklist")  # fmt: skip
                    picked = gr.Dropdown(label="Study", choices=[], elem_id="worklist-study")
                    open_picked = gr.Button("Open in the conversation",
                                            elem_id="worklist-open")  # fmt: skip
        inputs = [question, current, prior, prior_date, key, state, chat]
        outputs = [chat, state, gallery, table, report, downloads, question]
        current.change(preview, [current], [shown])
        ask.click(send, inputs, outputs)
        question.submit(send, inputs, outputs)
        forget_button.click(delete, [key, state], [chat, state, gallery, table, report, downloads])
        if pacs is not None:
            search.click(find, [patient, key], [found])
            opened.click(open_study, [found, key, state], [shown, state])
            build.click(build_worklist, [worklist_from, worklist_to, key], [ranked, picked])
            open_picked.click(open_study, [picked, key, state], [shown, state])
    return ui
