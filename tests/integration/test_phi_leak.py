"""No PHI from an uploaded DICOM reaches any output, log or stored byte, on any interface.

DICOMs carrying distinctive identifying strings (patient name, IDs, birth date, accession
number, institution, physicians, study dates, in standard, nested and private tags, and in
the upload's file name) go through the CLI (`tools run`, `ask`, `report`, `deid`), the REST
API (uploads incl. refused ones, JSON and streamed questions, reports in every format, the
session view, artefacts, tools, metrics), the MCP server (in memory, through the SDK's
client) and the Agent itself. Then every captured byte is searched for those strings as
text (any case), UTF-16, hex and base64, and for the original dates as YYYYMMDD and ISO.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import logging
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
import numpy as np
import pydicom
import pytest
from PIL import Image

from radpilot.app.client import ApiClientError, Client
from tests.factories import PRIVATE_TEXT, make_dicom
from tests.server import server_process

pytestmark = pytest.mark.integration

CURRENT_DATE, PRIOR_DATE, BIRTH_DATE = "20230419", "20221103", "19530817"
# Standard tags (PS3.15 removes, empties or replaces each), written as the modality would.
STANDARD_TAGS: dict[str, str] = {
    "PatientName": "Zwolinski^Agathe^Marguerite",
    "PatientID": "MRN-73915842",
    "OtherPatientIDs": "OPID-22904471",
    "PatientBirthDate": BIRTH_DATE,
    "PatientAddress": "88 Larkspur Crescent, Wexbury",
    "PatientComments": "Lives with daughter Philippa",
    "AccessionNumber": "ACC55503217",
    "StudyID": "STU90817QX",
    "InstitutionName": "Quillfeather Memorial Infirmary",
    "InstitutionAddress": "1 Thistledown Road, Wexbury",
    "ReferringPhysicianName": "Brightwater^Octavius",
    "PerformingPhysicianName": "Okonkwo-Stravinsky^Imelda",
    "OperatorsName": "Fennimore^Lucasta",
    "StationName": "QF-XR-ROOM7",
    "StudyDescription": "CHEST PA Quillfeather outreach clinic",
}
PRIVATE_CREATOR, PRIVATE_CANARY = "Quillco Imaging Systems", "PRIV-CANARY-8F3K2Q"
NESTED_PROCEDURE_ID = "RPID-4471-ZW"  # inside RequestAttributesSequence
UPLOAD_NAME = "Zwolinski_Agathe_MRN-73915842_ACC55503217.dcm"  # what PACS exports look like
# Also searched alone: parts of names and addresses appear in other arrangements.
FRAGMENTS = ["Zwolinski", "Agathe", "Marguerite", "Philippa", "Larkspur", "Quillfeather",
             "Thistledown", "Brightwater", "Octavius", "Stravinsky", "Imelda", "Fennimore",
             "Lucasta", "Wexbury", "Quillco"]  # fmt: skip
DATES = [CURRENT_DATE, PRIOR_DATE, BIRTH_DATE]
QUESTIONS = [
    "Is there a pleural effusion?",
    "Where is it?",
    "Any change since the prior film?",
    "How big is the heart?",
    "What do the guidelines say about a pleural effusion?",
    "Write a report",
]
REPORT_FORMATS: tuple[Literal["md", "json", "fhir"], ...] = ("md", "json", "fhir")
# The weights cache is filled from packaged files, never from requests: 90 MB not worth a scan.
UNSCANNED_DIRS = {"models"}


# --- the needles and the scanner -------------------------------------------------------------


def phi_strings(uids: list[str]) -> list[str]:
    dates = [f"{d[:4]}-{d[4:6]}-{d[6:]}" for d in DATES]
    fixed = [PRIVATE_CANARY, PRIVATE_TEXT, PRIVATE_CREATOR, NESTED_PROCEDURE_ID]
    return sorted({*STANDARD_TAGS.values(), *fixed, *FRAGMENTS, *DATES, *dates, *uids})


@dataclass(frozen=True)
class Form:
    phi: str
    encoding: str
    needle: bytes
    any_case: bool  # matched against the lower-cased haystack


def forms_of(text: str) -> list[Form]:
    """Text as it could sit in bytes: UTF-8, UTF-16, hex, base64 (at each of 3 alignments)."""
    raw = text.encode()
    found = [
        Form(text, "utf-8", raw.lower(), True),
        Form(text, "utf-16-le", text.lower().encode("utf-16-le"), True),
        Form(text, "utf-16-be", text.lower().encode("utf-16-be"), True),
        Form(text, "hex", raw.hex().encode(), True),
    ]
    for offset in range(3):
        # Only the base64 characters that depend on `text` alone, not on its neighbours.
        encoded = base64.b64encode(b"\0" * offset + raw)
        total = len(raw) + offset
        start, stop = (0, 2, 3)[offset], total // 3 * 4 + total % 3
        found.append(Form(text, f"base64+{offset}", encoded[start:stop], False))
    return found


@dataclass
class Haystacks:
    """Everything captured, by kind, as (where, bytes)."""

    items: dict[str, list[tuple[str, bytes]]] = field(default_factory=dict)

    def add(self, kind: str, where: str, data: bytes | str) -> None:
        blob = data.encode() if isinstance(data, str) else data
        self.items.setdefault(kind, []).append((where, blob))

    def count(self, kind: str) -> tuple[int, int]:
        found = self.items.get(kind, [])
        return len(found), sum(len(blob) for _, blob in found)


def scan(blobs: list[tuple[str, bytes]], forms: list[Form]) -> list[str]:
    hits = []
    for where, blob in blobs:
        lowered = blob.lower()
        for form in forms:
            if form.needle in (lowered if form.any_case else blob):
                hits.append(f"{where}: {form.phi!r} as {form.encoding}")
    return hits


# --- the inputs ------------------------------------------------------------------------------


def phi_dicom(pixels: np.ndarray, study_date: str, **options: Any) -> bytes:
    """A factory DICOM with every identifying attribute above set, nested and private too."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    ds = pydicom.dcmread(io.BytesIO(make_dicom(pixels=pixels, study_date=study_date, **options)))
    for keyword, value in STANDARD_TAGS.items():
        setattr(ds, keyword, value)
    ds.SeriesDate = ds.ContentDate = study_date
    ds.AcquisitionDateTime = f"{study_date}101500"
    request = Dataset()
    request.RequestedProcedureID = NESTED_PROCEDURE_ID
    request.AccessionNumber = STANDARD_TAGS["AccessionNumber"]
    ds.RequestAttributesSequence = Sequence([request])
    block = ds.private_block(0x0019, PRIVATE_CREATOR, create=True)
    block.add_new(0x10, "LO", PRIVATE_CANARY)
    block.add_new(0x11, "LO", STANDARD_TAGS["PatientName"])
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@dataclass
class Inputs:
    current: Path
    prior: Path
    refused: dict[str, bytes]  # uploads the API must refuse, PHI and all
    uids: list[str]


def make_inputs(folder: Path, data_dir: Path) -> Inputs:
    folder.mkdir(parents=True, exist_ok=True)
    image = data_dir / "nih" / "images" / "00000211_010.png"
    pixels = np.asarray(Image.open(image).convert("L"), dtype=np.float32) / 255.0
    current = folder / "current.dcm"
    current.write_bytes(phi_dicom(pixels, CURRENT_DATE))
    prior = folder / "prior.dcm"
    prior.write_bytes(phi_dicom(pixels, PRIOR_DATE))
    refused = {
        "ct": phi_dicom(pixels[:64, :64], CURRENT_DATE, modality="CT"),
        "no_pixels": phi_dicom(pixels, CURRENT_DATE, with_pixels=False),
        "truncated": current.read_bytes()[:3000],
    }
    uids = []
    for path in (current, prior):
        ds = pydicom.dcmread(path)
        uids += [ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID]
    return Inputs(current, prior, refused, [str(uid) for uid in uids])


# --- driving every interface -----------------------------------------------------------------


@contextlib.contextmanager
def captured_logs(haystacks: Haystacks) -> Iterator[None]:
    """Every log record of this process (radpilot's at DEBUG), formatted with its arguments."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root, ours = logging.getLogger(), logging.getLogger("radpilot")
    levels = root.level, ours.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    ours.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(levels[0])
        ours.setLevel(levels[1])
        haystacks.add("logs", "in-process log records", stream.getvalue())


def through_the_api(state: Path, log: Path, inputs: Inputs, haystacks: Haystacks) -> int:
    """Every route, the refused uploads included; returns how many responses were kept."""
    responses: list[httpx.Response] = []

    def keep(response: httpx.Response) -> None:
        response.read()  # also buffers streamed (SSE) bodies; iterating them still works
        responses.append(response)

    with (
        log.open("w") as output,
        server_process(state, output=output) as server,
        Client(server.url) as rp,
    ):
        rp.http.event_hooks["response"] = [keep]
        session = rp.create_session()
        rp.upload_study(session, inputs.prior.read_bytes(), role="prior")
        current = rp.http.post(  # the file name a PACS export carries
            f"/v1/sessions/{session}/studies",
            files={"file": (UPLOAD_NAME, inputs.current.read_bytes())},
            data={"role": "current"},
        )
        assert current.status_code == 201, current.text
        for name, data in inputs.refused.items():
            with pytest.raises(ApiClientError) as refused:
                rp.upload_study(session, data)
            assert 400 <= refused.value.status < 500, name
        for index, question in enumerate(QUESTIONS):
            if index % 2:
                assert [e.kind for e in rp.stream(session, question)][-1] == "final"
            else:
                rp.ask(session, question)
        view = rp.session(session)
        for evidence in view.evidence:
            for artefact in evidence.artefacts:
                assert rp.artefact(artefact.id)[:4] == b"\x89PNG"
        for format in REPORT_FORMATS:
            rp.report(session, format)
        rp.tools()
        for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
            rp.http.get(path)  # kept by the hook like every other response
    for response in responses:
        request = response.request
        haystacks.add("responses", f"api {request.method} {request.url.path}", response.content)
        haystacks.add("responses", "api headers", str(dict(response.headers)))
    haystacks.add("logs", "server stdout/stderr", log.read_bytes())
    return len(responses)


def run_cli(haystacks: Haystacks, *argv: str) -> int:
    from radpilot.app.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    haystacks.add("responses", f"cli {argv[0]} stdout", out.getvalue())
    haystacks.add("logs", f"cli {argv[0]} stderr", err.getvalue())
    return code


def through_the_cli(inputs: Inputs, work: Path, haystacks: Haystacks) -> int:
    current, prior = str(inputs.current), str(inputs.prior)
    saved = work / "saved-artefacts"
    runs = [
        ("tools", "run", "image_info", "--image", current),
        ("tools", "run", "classify_findings", "--image", current),
        ("tools", "run", "localize_finding", "--image", current,
         "--args", '{"finding": "Effusion"}', "--save-artefacts", str(saved)),
        ("ask", "--prior", prior, "--json", current, "Any change since the prior film?"),
        ("ask", current, "Is there a pleural effusion?"),
        ("report", current, "--format", "fhir"),
        ("deid", current, str(work / "deid" / "current.dcm")),
        ("deid", str(inputs.current.parent), str(work / "deid-folder")),
    ]  # fmt: skip
    for argv in runs:
        assert run_cli(haystacks, *argv) == 0, argv
    ct = work / "ct.dcm"
    ct.write_bytes(inputs.refused["ct"])
    assert run_cli(haystacks, "tools", "run", "image_info", "--image", str(ct)) == 2
    for path in sorted([*saved.rglob("*"), *(work / "deid").rglob("*"),
                        *(work / "deid-folder").rglob("*")]):  # fmt: skip
        if path.is_file():
            haystacks.add("outputs", f"cli output {path.name}", path.read_bytes())
    return len(runs) + 1


def through_the_agent_and_mcp(state: Path, inputs: Inputs, haystacks: Haystacks) -> int:
    """The Agent in process, then the MCP server on the same Agent through the SDK's client."""
    from radpilot.agent.report import render_markdown, to_fhir
    from radpilot.app.mcp_server import build_mcp_server
    from radpilot.assembly import build_agent
    from radpilot.settings import Settings

    agent = build_agent(Settings(state_dir=state))
    session = agent.new_session()
    agent.add_study(session, inputs.prior.read_bytes(), UPLOAD_NAME, role="prior")
    agent.add_study(session, inputs.current.read_bytes(), UPLOAD_NAME)
    outputs = 0
    for question in QUESTIONS[:4]:
        for event in agent.stream(session, question):
            haystacks.add("responses", f"agent event {event.kind}", event.model_dump_json())
            outputs += 1
    state_now = agent.state(session)
    answer = state_now.answer
    assert answer is not None
    haystacks.add("responses", "agent state", state_now.model_dump_json())
    haystacks.add("responses", "agent report md", render_markdown(answer))
    haystacks.add("responses", "agent report fhir", json.dumps(to_fhir(answer, state_now.studies)))

    async def conversation() -> list[str]:
        from mcp import Client as McpClient

        texts = []
        async with McpClient(build_mcp_server(agent)) as client:
            session_id = (await client.call_tool("new_session", {})).content[0].text  # type: ignore[union-attr]
            encoded = base64.b64encode(inputs.current.read_bytes()).decode()
            calls = [
                ("add_study", {"session_id": session_id, "path": str(inputs.prior),
                               "role": "prior"}),
                ("add_study", {"session_id": session_id, "image_base64": encoded}),
                ("ask", {"session_id": session_id, "question": "Is there a pleural effusion?"}),
                ("ask", {"session_id": session_id, "question": "Any change since the prior?"}),
            ]  # fmt: skip
            for name, arguments in calls:
                result = await client.call_tool(name, arguments)
                assert not result.is_error, result
                texts.append(result.model_dump_json())
            study = json.loads(json.loads(texts[1])["content"][0]["text"])["study_id"]
            for tool in ("image_info", "classify_findings"):
                scoped = {"session_id": session_id, "arguments": {"study_id": study}}
                result = await client.call_tool(tool, scoped)
                assert not result.is_error, result
                texts.append(result.model_dump_json())
            bad = await client.call_tool("add_study", {"session_id": session_id,
                "image_base64": base64.b64encode(inputs.refused["ct"]).decode()})  # fmt: skip
            assert bad.is_error
            texts.append(bad.model_dump_json())
        return texts

    for text in asyncio.run(conversation()):
        haystacks.add("responses", "mcp tool result", text)
        outputs += 1
    return outputs + 3


@dataclass
class Exposure:
    state: Path
    inputs: Inputs
    haystacks: Haystacks
    forms: list[Form]
    interactions: dict[str, int]


@pytest.fixture(scope="module")
def exposure(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Iterator[Exposure]:
    work = tmp_path_factory.mktemp("phi")
    state = work / "state"
    inputs = make_inputs(work / "inputs", data_dir)
    haystacks = Haystacks()
    interactions = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RADPILOT_STATE_DIR", str(state))  # the CLI reads its Settings from here
        interactions["api responses"] = through_the_api(state, work / "server.log", inputs,
                                                        haystacks)  # fmt: skip
        with captured_logs(haystacks):
            interactions["cli runs"] = through_the_cli(inputs, work, haystacks)
            interactions["agent and mcp outputs"] = through_the_agent_and_mcp(
                state, inputs, haystacks
            )
    yield Exposure(state, inputs, haystacks, [f for t in phi_strings(inputs.uids)
                                             for f in forms_of(t)], interactions)  # fmt: skip


def stored_files(state: Path) -> list[Path]:
    return sorted(
        path
        for path in state.rglob("*")
        if path.is_file() and path.relative_to(state).parts[0] not in UNSCANNED_DIRS
    )


def sqlite_rows(state: Path) -> Iterator[tuple[str, bytes]]:
    """Every row of every table of every SQLite database under the state dir (sessions,
    ownership, Chroma), values joined as bytes: msgpack and JSON blobs keep strings raw."""
    for path in stored_files(state):
        if path.read_bytes()[:16] != b"SQLite format 3\x00":
            continue
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master "
                                                   "WHERE type = 'table'")]  # fmt: skip
            for table in tables:
                try:
                    rows = db.execute(f'SELECT * FROM "{table}"').fetchall()
                except sqlite3.OperationalError:  # a virtual table whose module is not here
                    continue
                values = [v if isinstance(v, bytes) else str(v).encode() for r in rows for v in r]
                yield f"{path.name}:{table} ({len(rows)} rows)", b"\x1f".join(values)


# --- the checks ------------------------------------------------------------------------------


def test_the_scanner_finds_every_phi_form_in_the_inputs(exposure: Exposure) -> None:
    """Positive control: each string is in the input, and each encoding is recognised."""
    raw = exposure.inputs.current.read_bytes() + exposure.inputs.prior.read_bytes()
    for text in phi_strings(exposure.inputs.uids):
        if "-" in text and text[:4].isdigit():  # ISO dates: DICOM stores YYYYMMDD only
            continue
        assert text.encode() in raw, f"{text!r} is not in the test DICOMs"
        embedded = [
            b"<" + text.encode() + b">",
            text.upper().encode("utf-16-le"),
            base64.b64encode(b"xy" + text.encode() + b"z"),
            text.encode().hex().encode(),
        ]
        hits = scan([("control", blob) for blob in embedded], forms_of(text))
        assert {hit.split(" as ")[1] for hit in hits} >= {"utf-8", "utf-16-le", "hex", "base64+2"}


def test_no_phi_in_any_response(exposure: Exposure) -> None:
    hits = scan(exposure.haystacks.items["responses"], exposure.forms)
    assert not hits, hits


def test_no_phi_in_logs(exposure: Exposure) -> None:
    hits = scan(exposure.haystacks.items["logs"], exposure.forms)
    assert not hits, hits


def test_no_phi_in_cli_outputs(exposure: Exposure) -> None:
    """De-identified DICOMs and saved overlays are what users copy elsewhere."""
    hits = scan(exposure.haystacks.items["outputs"], exposure.forms)
    assert not hits, hits


def test_no_phi_in_any_stored_byte(exposure: Exposure) -> None:
    files = stored_files(exposure.state)
    folders = {path.relative_to(exposure.state).parts[0] for path in files}
    assert {"studies", "artefacts", "knowledge"} <= folders, folders  # everything was written
    blobs = [(str(path.relative_to(exposure.state)), path.read_bytes()) for path in files]
    names = "\n".join(str(path.relative_to(exposure.state)) for path in exposure.state.rglob("*"))
    hits = scan([*blobs, ("file names", names.encode())], exposure.forms)
    assert not hits, hits
    for where, blob in blobs:
        exposure.haystacks.add("stored files", where, blob)


def test_no_phi_in_any_sqlite_row(exposure: Exposure) -> None:
    tables = list(sqlite_rows(exposure.state))
    assert any(where.startswith("sessions.sqlite:checkpoints") for where, _ in tables)
    assert any(where.startswith("chroma.sqlite3") for where, _ in tables)
    hits = scan(tables, exposure.forms)
    assert not hits, hits
    for where, blob in tables:
        exposure.haystacks.add("sqlite tables", where, blob)


def test_what_was_scanned(exposure: Exposure) -> None:
    """Not a check of its own: the counts, for the record (`pytest -s` prints them)."""
    counts = {kind: exposure.haystacks.count(kind) for kind in sorted(exposure.haystacks.items)}
    phi = phi_strings(exposure.inputs.uids)
    print(
        f"\nPHI scan: {len(phi)} strings in {len(exposure.forms)} encoded forms; "
        + "; ".join(f"{kind}: {n} blobs, {size:,} bytes" for kind, (n, size) in counts.items())
        + "; interactions: "
        + ", ".join(f"{n} {what}" for what, n in exposure.interactions.items())
    )
    assert all(n > 0 for n, _ in counts.values())
