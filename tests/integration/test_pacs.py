"""A real PACS: a throwaway Orthanc with its DICOMweb plugin on loopback (Debian's `orthanc` and
`orthanc-dicomweb`, installed by .ci/run). The development DICOM is stored under two synthetic
dates of one synthetic patient; radpilot searches, pulls the newest, finds the other as its
prior, compares them, and keeps no identifying value. Faults (PACS down, slow, refusing us;
no radiograph, multi-frame, huge instance, bad prior) are clear errors that change nothing.
"""

from __future__ import annotations

import io
import logging
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from fastapi.testclient import TestClient
from pydicom.uid import JPEG2000Lossless, RLELossless, generate_uid

from radpilot.app.api import create_app
from radpilot.assembly import build_agent
from radpilot.pacs.client import PacsClient, PacsError, PacsQuery
from radpilot.settings import Settings
from radpilot.tools.dicom import Deidentifier, decode_dicom
from tests import orthanc as pacs

pytestmark = pytest.mark.integration

PATIENT, LONE_PATIENT = "SYN-PACS-0001", "SYN-PACS-0002"
DATES = ("20240105", "20250310")
# Every identifying value stored in the PACS: none may reach the session's state or the logs.
PATIENT_NAME = "Synthetic^Pacspatient"


@pytest.fixture(scope="module")
def dev_dicom(data_dir: Path) -> bytes:
    path = data_dir / "dicom" / "siim_chest_pa.dcm"
    if not path.is_file():
        pytest.skip(f"the development DICOM is missing: {path}")
    return path.read_bytes()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[pacs.Orthanc]:
    reason = pacs.missing()
    if reason:
        pytest.skip(reason)
    with pacs.orthanc(tmp_path_factory.mktemp("orthanc")) as running:
        yield running


def variant(data: bytes, *, patient: str, day: str, **changes: Any) -> tuple[bytes, str]:
    """The DICOM as a new study of `patient` on `day` (new UIDs); its StudyInstanceUID."""
    ds = pydicom.dcmread(io.BytesIO(data))
    study = generate_uid()
    ds.PatientID, ds.PatientName, ds.AccessionNumber = patient, PATIENT_NAME, f"A{day}"
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = day
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    buffer = io.BytesIO()
    ds.save_as(buffer)
    return buffer.getvalue(), study


@pytest.fixture(scope="module")
def studies(server: pacs.Orthanc, dev_dicom: bytes) -> dict[str, str]:
    uids = {}
    for name, patient, day, changes in [
        ("prior", PATIENT, DATES[0], {}), ("current", PATIENT, DATES[1], {}),
        ("lone", LONE_PATIENT, DATES[1], {}),
        ("mr", "SYN-PACS-0003", DATES[1], {"Modality": "MR"}),
        ("multi_frame", "SYN-PACS-0004", DATES[1], {"NumberOfFrames": 2}),
        ("huge", "SYN-PACS-0005", DATES[1], {"Rows": 60000, "Columns": 60000}),
    ]:  # fmt: skip
        data, uids[name] = variant(dev_dicom, patient=patient, day=day, **changes)
        server.store(data)
    return uids


def client(server: pacs.Orthanc, **options: Any) -> PacsClient:
    options = {"username": pacs.USER, "password": pacs.PASSWORD, **options}
    return PacsClient(server.dicomweb, max_pixels=50_000_000, **options)


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory, server: pacs.Orthanc) -> Any:
    return build_agent(Settings(state_dir=tmp_path_factory.mktemp("state"),
                                dicomweb_url=server.dicomweb, dicomweb_username=pacs.USER,
                                dicomweb_password=pacs.PASSWORD))  # fmt: skip


def api(agent: Any, url: str, **settings: Any) -> TestClient:
    settings = {"dicomweb_username": pacs.USER, "dicomweb_password": pacs.PASSWORD, **settings}
    configured = Settings(state_dir=agent.settings.state_dir, dicomweb_url=url, **settings)
    return TestClient(create_app(configured, agent=agent, ui=False))


def test_search_finds_the_patients_radiograph_studies_newest_first(
    server: pacs.Orthanc, studies: dict[str, str]
) -> None:
    found = client(server).find_studies(PacsQuery(patient_id=PATIENT))
    assert [s.study_uid for s in found] == [studies["current"], studies["prior"]]
    assert [str(s.study_date) for s in found] == ["2025-03-10", "2024-01-05"]
    assert client(server).find_studies(PacsQuery(accession_number=f"A{DATES[0]}"))
    narrowed = PacsQuery(patient_id=PATIENT, date_from="2025-01-01")  # type: ignore[arg-type]
    assert [s.study_uid for s in client(server).find_studies(narrowed)] == [studies["current"]]
    # An MR study is not offered as a radiograph.
    assert client(server).find_studies(PacsQuery(patient_id="SYN-PACS-0003")) == []


def test_the_loop_search_pull_prior_compare_keeps_no_identifying_value(
    server: pacs.Orthanc, studies: dict[str, str], agent: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with api(agent, server.dicomweb) as http:
        listed = http.post("/v1/pacs/search", json={"patient_id": PATIENT})
        assert listed.status_code == 200
        newest = listed.json()["studies"][0]["study_uid"]
        session = http.post("/v1/sessions").json()["session_id"]
        pulled = http.post(f"/v1/sessions/{session}/pacs", json={"study_uid": newest})
        assert pulled.status_code == 201, pulled.text
        result = pulled.json()
        assert result["current"]["pacs_date"] == "2025-03-10"
        assert result["prior"]["pacs_date"] == "2024-01-05", "the most recent prior is linked"
        assert [p["study_uid"] for p in result["priors"]] == [studies["prior"]]
        answer = http.post(f"/v1/sessions/{session}/messages",
                           json={"text": "Has anything changed since the prior film?"})  # fmt: skip
        assert answer.status_code == 200, answer.text
        comparison = [e for e in answer.json()["evidence"] if e["tool"] == "compare_studies"]
        assert comparison and comparison[0]["inputs"]["prior_id"] == result["prior"]["study_id"]
        roles = {s["study_id"]: s["role"] for s in http.get(f"/v1/sessions/{session}").json()
                 ["studies"]}  # fmt: skip
        assert roles == {result["current"]["study_id"]: "current",
                         result["prior"]["study_id"]: "prior"}  # fmt: skip
    identifying = [PATIENT, "Pacspatient", f"A{DATES[1]}", studies["current"], studies["prior"]]
    for path in agent.settings.state_dir.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            leaked = [value for value in identifying if value.encode() in content]
            assert not leaked, f"{path.name} keeps {leaked}"
    logged = caplog.text
    assert not [value for value in identifying if value in logged]


def test_no_prior_is_invented_when_the_pacs_has_none(
    server: pacs.Orthanc, studies: dict[str, str], agent: Any
) -> None:
    with api(agent, server.dicomweb) as http:
        session = http.post("/v1/sessions").json()["session_id"]
        result = http.post(f"/v1/sessions/{session}/pacs",
                           json={"study_uid": studies["lone"]}).json()  # fmt: skip
        assert result["prior"] is None and result["priors"] == []
        assert "no earlier" in result["note"]
        question = {"text": "Compared with the prior, is it worse?"}
        answer = http.post(f"/v1/sessions/{session}/messages", json=question).json()
        assert not [e for e in answer["evidence"] if e["tool"] == "compare_studies"]
        # Asking for no prior links none even where one exists.
        session = http.post("/v1/sessions").json()["session_id"]
        no_prior = {"study_uid": studies["current"], "prior": "none"}
        none = http.post(f"/v1/sessions/{session}/pacs", json=no_prior).json()
        assert none["prior"] is None and len(none["priors"]) == 1


@pytest.mark.parametrize(
    ("study", "body", "status", "code"),
    [
        ("mr", {}, 400, "no_radiograph"),
        ("multi_frame", {}, 400, "multi_frame"),
        ("huge", {}, 413, "image_too_large"),
        ("current", {"prior": "1.2.3.4"}, 422, "bad_prior"),
        ("lone", {"prior": "not a uid"}, 422, "invalid_request"),
        (None, {}, 404, "pacs_not_found"),
    ],
)
def test_a_study_radpilot_cannot_read_is_refused_and_changes_nothing(
    server: pacs.Orthanc, studies: dict[str, str], agent: Any,
    study: str | None, body: dict[str, str], status: int, code: str,
) -> None:  # fmt: skip
    with api(agent, server.dicomweb) as http:
        session = http.post("/v1/sessions").json()["session_id"]
        uid = studies[study] if study else "1.2.3.999"
        reply = http.post(f"/v1/sessions/{session}/pacs", json={"study_uid": uid, **body})
        assert (reply.status_code, reply.json()["error"]["code"]) == (status, code), reply.text
        assert http.get(f"/v1/sessions/{session}").json()["studies"] == []


def test_search_input_is_exact_and_bounded(server: pacs.Orthanc, agent: Any) -> None:
    with api(agent, server.dicomweb) as http:
        backwards = {"patient_id": "x", "date_from": "2025-02-01", "date_to": "2025-01-01"}
        for params in ({"patient_id": "SYN*"}, {"patient_id": "a\\b"}, {}, backwards):
            reply = http.post("/v1/pacs/search", json=params)
            assert reply.status_code == 422 and reply.json()["error"]["code"] == "invalid_request"


def silent_server() -> tuple[socket.socket, int]:
    """A port that accepts connections and never answers: a PACS that hangs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held: list[socket.socket] = []
    threading.Thread(target=lambda: held.extend(iter(lambda: listener.accept()[0], None)),
                     daemon=True).start()  # fmt: skip
    return listener, int(listener.getsockname()[1])


def test_a_pacs_that_is_down_slow_or_refusing_us_is_a_clear_gateway_error(
    server: pacs.Orthanc, studies: dict[str, str], agent: Any
) -> None:
    from tests.server import free_port

    listener, silent = silent_server()
    cases = [
        (f"http://127.0.0.1:{free_port()}/dicom-web", {}, 502, "pacs_unavailable"),
        (f"http://127.0.0.1:{silent}/dicom-web", {"dicomweb_timeout_s": 1.0}, 504,
         "pacs_timeout"),
        (server.dicomweb, {"dicomweb_password": "wrong"}, 502, "pacs_auth"),
    ]  # fmt: skip
    try:
        for url, settings, status, code in cases:
            with api(agent, url, **settings) as http:
                session = http.post("/v1/sessions").json()["session_id"]
                search = http.post("/v1/pacs/search", json={"patient_id": PATIENT})
                pulled = http.post(f"/v1/sessions/{session}/pacs",
                                   json={"study_uid": studies["current"]})  # fmt: skip
                for reply in (search, pulled):
                    assert reply.status_code == status and reply.json()["error"]["code"] == code
                    assert "wrong" not in reply.text and pacs.PASSWORD not in reply.text
                assert http.get(f"/v1/sessions/{session}").json()["studies"] == []
    finally:
        listener.close()


def test_without_a_pacs_the_routes_are_absent_and_the_cli_says_how_to_set_one() -> None:
    with TestClient(create_app(Settings(), agent=None, ui=False)) as http:
        assert http.post("/v1/pacs/search", json={"patient_id": "x"}).status_code == 404
    with pytest.raises(PacsError, match="RADPILOT_DICOMWEB_URL"):
        PacsClient.from_settings(Settings())


TRANSCODED_BY_ORTHANC = ["1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51",
                         "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80",
                         "1.2.840.10008.1.2.1.99"]  # fmt: skip
LOSSY = {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51"}


def test_what_pacs_store_for_cr_dx_is_decoded(server: pacs.Orthanc, dev_dicom: bytes) -> None:
    """JPEG Baseline, Extended and Lossless, JPEG-LS and deflate as Orthanc (DCMTK) writes
    them; RLE and JPEG 2000 as pydicom's encoders write them: pulled over WADO-RS in the
    stored syntax and decoded like the uncompressed original."""
    source, _ = variant(dev_dicom, patient="SYN-PACS-0010", day=DATES[1])
    orthanc_id = server.store(source)
    with server.rest() as http:
        def transcoded(syntax: str) -> bytes:
            reply = http.post(f"/instances/{orthanc_id}/modify",
                              json={"Transcode": syntax, "Force": True})  # fmt: skip
            reply.raise_for_status()
            return reply.content

        plain = transcoded("1.2.840.10008.1.2.1")
        encoded = {syntax: transcoded(syntax) for syntax in TRANSCODED_BY_ORTHANC}
    for syntax in (RLELossless, JPEG2000Lossless):
        ds = pydicom.dcmread(io.BytesIO(plain))
        ds.compress(syntax)
        buffer = io.BytesIO()
        ds.save_as(buffer)
        encoded[str(syntax)] = buffer.getvalue()
    deidentifier = Deidentifier(b"k" * 32)
    reference = decode_dicom(plain, max_pixels=10**8, deidentifier=deidentifier).pixels
    for syntax, data in encoded.items():
        stored, study = variant(data, patient="SYN-PACS-0010", day=DATES[0])
        server.store(stored)
        _, pulled = client(server).radiograph(study)
        dataset = pydicom.dcmread(io.BytesIO(pulled))
        assert dataset.file_meta.TransferSyntaxUID == syntax, "pulled in the stored syntax"
        pixels = decode_dicom(pulled, max_pixels=10**8, deidentifier=deidentifier).pixels
        error = float(np.abs(pixels - reference).mean())
        assert error < (0.01 if syntax in LOSSY else 1e-6), f"{syntax}: mean error {error}"


def test_mcp_finds_and_pulls_within_the_callers_session(
    studies: dict[str, str], agent: Any
) -> None:
    import asyncio
    import json

    from mcp import Client

    from radpilot.app.mcp_server import build_mcp_server
    from tests.integration.test_mcp import refusal

    async def conversation() -> tuple[Any, Any, Any]:
        async with Client(build_mcp_server(agent)) as mcp:  # type: ignore[arg-type]
            session = (await mcp.call_tool("new_session", {})).content[0].text  # type: ignore[union-attr]
            found = await mcp.call_tool("find_studies", {"query": {"patient_id": PATIENT}})
            request = {"study_uid": studies["current"]}
            pulled = await mcp.call_tool("pull_study", {"session_id": session, "request": request})
            foreign = await mcp.call_tool("pull_study", {"session_id": "se_not_mine",
                                                         "request": request})  # fmt: skip
            return found, pulled, foreign

    found, pulled, foreign = asyncio.run(conversation())
    listed = json.loads(found.content[0].text)["studies"]
    assert [s["study_uid"] for s in listed] == [studies["current"], studies["prior"]]
    result = json.loads(pulled.content[0].text)
    assert result["prior"]["pacs_date"] == "2024-01-05"
    assert refusal(foreign)["code"] == "unknown_session"


def read_back(server: pacs.Orthanc, study_uid: str, sop_uid: str) -> Any:
    web = client(server)
    found = [i for i in web.instances(study_uid) if i.sop_uid == sop_uid]
    assert found, f"{sop_uid} is not in the PACS"
    return pydicom.dcmread(io.BytesIO(web.retrieve(found[0])))


def dciodvfy_errors(dataset: Any, folder: Path) -> list[str]:
    import shutil
    import subprocess

    if shutil.which("dciodvfy") is None:
        pytest.skip("Debian's dicom3tools (dciodvfy) is not installed")
    path = folder / "object.dcm"
    dataset.save_as(path, enforce_file_format=True)
    checked = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (checked.stdout + checked.stderr).splitlines()
            if line.startswith("Error")]  # fmt: skip


def test_the_whole_loop_search_pull_prior_ask_sr_back_read_back_then_forgotten(
    server: pacs.Orthanc, studies: dict[str, str], agent: Any, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    caplog.set_level(logging.DEBUG)
    with api(agent, server.dicomweb, pacs_write_back=True) as http:
        newest = http.post("/v1/pacs/search", json={"patient_id": PATIENT}).json()["studies"][0]
        session = http.post("/v1/sessions").json()["session_id"]
        pulled = http.post(f"/v1/sessions/{session}/pacs", json={"study_uid": newest["study_uid"]})
        assert pulled.status_code == 201 and pulled.json()["prior"]["pacs_date"] == "2024-01-05"
        link = agent.settings.state_dir / "pacs_links" / f"{session}.json"
        assert link.stat().st_mode & 0o777 == 0o600
        assert PATIENT.encode() not in link.read_bytes(), "only UIDs are kept"
        asked = http.post(f"/v1/sessions/{session}/messages", json={"text": "Where is the nodule?"})
        assert asked.status_code == 200
        written = http.post(f"/v1/sessions/{session}/pacs/results")
        assert written.status_code == 201, written.text
        result = written.json()
        assert result["study_uid"] == studies["current"]
        overlays = [a for e in asked.json()["evidence"] for a in e["artefacts"]]
        assert len(result["secondary_capture_uids"]) == len(overlays) >= 1

        report = read_back(server, studies["current"], result["structured_report_uid"])
        assert report.Modality == "SR" and report.PatientID == PATIENT, "filed with the patient"
        assert report.StudyInstanceUID == studies["current"]
        texts = [item.get("TextValue", "") for item in report.ContentSequence]
        assert any("not a diagnosis" in text for text in texts)
        statements = [i for i in report.ContentSequence if i.ConceptNameCodeSequence[0]
                      .CodeMeaning == "Statement"]  # fmt: skip
        assert len(statements) == len(asked.json()["claims"])
        assert all(any(c.ConceptNameCodeSequence[0].CodeMeaning == "Evidence"
                       for c in s.ContentSequence) for s in statements)  # fmt: skip
        boxes = [i for i in report.ContentSequence if i.ValueType == "SCOORD"]
        assert boxes and boxes[0].GraphicType == "POLYLINE"
        assert dciodvfy_errors(report, tmp_path) == []
        capture = read_back(server, studies["current"], result["secondary_capture_uids"][0])
        assert capture.PatientID == PATIENT and capture.pixel_array.ndim == 3

        assert http.delete(f"/v1/sessions/{session}").status_code == 204
        assert not link.exists(), "the original UIDs go with the session"
    identifying = [PATIENT, "Pacspatient", studies["current"], studies["prior"]]
    for path in agent.settings.state_dir.rglob("*"):
        if path.is_file():
            assert not [v for v in identifying if v.encode() in path.read_bytes()], path.name
    assert not [value for value in identifying if value in caplog.text], "nothing in the logs"


def test_write_back_is_refused_unless_allowed_pulled_and_answered(
    server: pacs.Orthanc, studies: dict[str, str], agent: Any, dev_dicom: bytes
) -> None:
    with api(agent, server.dicomweb) as http:  # the site setting is off
        session = http.post("/v1/sessions").json()["session_id"]
        http.post(f"/v1/sessions/{session}/pacs", json={"study_uid": studies["lone"]})
        http.post(f"/v1/sessions/{session}/messages", json={"text": "What do you see?"})
        refused = http.post(f"/v1/sessions/{session}/pacs/results")
        assert (refused.status_code, refused.json()["error"]["code"]) == (403,
                                                                          "write_back_disabled")
    with api(agent, server.dicomweb, pacs_write_back=True) as http:
        session = http.post("/v1/sessions").json()["session_id"]
        http.post(f"/v1/sessions/{session}/pacs", json={"study_uid": studies["lone"]})
        early = http.post(f"/v1/sessions/{session}/pacs/results")
        assert (early.status_code, early.json()["error"]["code"]) == (409, "no_answer")
        uploaded = http.post("/v1/sessions").json()["session_id"]
        http.post(f"/v1/sessions/{uploaded}/studies", files={"file": ("cxr.dcm", dev_dicom)})
        http.post(f"/v1/sessions/{uploaded}/messages", json={"text": "What do you see?"})
        foreign = http.post(f"/v1/sessions/{uploaded}/pacs/results")
        assert (foreign.status_code, foreign.json()["error"]["code"]) == (409, "not_from_pacs")


def test_a_stow_the_pacs_rejects_is_a_clear_error(
    tmp_path: Path, agent: Any, dev_dicom: bytes
) -> None:
    if pacs.missing():
        pytest.skip(pacs.missing() or "")
    (tmp_path / "refusing").mkdir()
    with pacs.orthanc(tmp_path / "refusing", lua=pacs.REFUSE_STOW) as refusing:
        data, study = variant(dev_dicom, patient="SYN-PACS-0020", day=DATES[1])
        refusing.store(data)
        with api(agent, refusing.dicomweb, pacs_write_back=True) as http:
            session = http.post("/v1/sessions").json()["session_id"]
            assert http.post(f"/v1/sessions/{session}/pacs",
                             json={"study_uid": study}).status_code == 201  # fmt: skip
            http.post(f"/v1/sessions/{session}/messages", json={"text": "Any effusion?"})
            rejected = http.post(f"/v1/sessions/{session}/pacs/results")
            assert rejected.status_code == 502, rejected.text
            assert rejected.json()["error"]["code"] == "pacs_rejected"
        kinds = {i.modality for i in client(refusing).instances(study)}
        assert kinds == {"CR"}, "nothing but the original is in the study"


def test_triage_over_a_pacs_date_range_ranks_every_radiograph_study(
    server: pacs.Orthanc, studies: dict[str, str], tmp_path: Path
) -> None:
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "RADPILOT_DICOMWEB_URL": server.dicomweb,
           "RADPILOT_DICOMWEB_USERNAME": pacs.USER, "RADPILOT_DICOMWEB_PASSWORD": pacs.PASSWORD,
           "RADPILOT_STATE_DIR": str(tmp_path / "state")}  # fmt: skip
    out = tmp_path / "worklist.json"
    ran = subprocess.run([sys.executable, "-m", "radpilot.app.cli", "triage", "--pacs",
                          "--from", "2025-03-01", "--to", "2025-03-31", "--out", str(out)],
                         env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert "triage: " in ran.stderr and "studies" in ran.stderr, "progress is shown"
    items = json.loads(out.read_text())["items"]
    by_study = {item["source"]: item for item in items}
    # The MR study is not a radiograph study; the rest are ranked, the unreadable ones flagged.
    assert studies["mr"] not in by_study
    assert {studies["current"], studies["lone"], studies["multi_frame"], studies["huge"]} <= set(
        by_study
    )
    assert by_study[studies["multi_frame"]]["urgency"] == "not assessable"
    assert by_study[studies["huge"]]["urgency"] == "not assessable"
    assert [item["rank"] for item in items] == list(range(1, len(items) + 1))
    assert all(item["study_date"] == "2025-03-10" for item in items)
    wide = subprocess.run([sys.executable, "-m", "radpilot.app.cli", "triage", "--pacs",
                           "--from", "2025-01-01", "--to", "2025-12-31"],
                          env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert wide.returncode == 2 and "at most 31 days" in wide.stderr
