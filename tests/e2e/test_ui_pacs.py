"""The UI's PACS search and Worklist tab in a real browser, against a real `radpilot serve`
and a throwaway Orthanc: search a patient, open the newest study with its prior, ask about
change; build a worklist over a date range."""

import io
import re
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid

from tests import orthanc as pacs
from tests.e2e.test_ui import ARTIFACTS, browser  # noqa: F401  (the fixture)
from tests.server import running_server

pytestmark = pytest.mark.e2e
expect = pytest.importorskip("playwright.sync_api", reason="playwright is not installed").expect

PATIENT = "SYN-UI-0001"


def stored(server: pacs.Orthanc, data: bytes, day: str) -> None:
    ds = pydicom.dcmread(io.BytesIO(data))
    ds.PatientID, ds.PatientName, ds.StudyDate, ds.AccessionNumber = PATIENT, "Ui^Test", day, day
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    buffer = io.BytesIO()
    ds.save_as(buffer)
    server.store(buffer.getvalue())


def test_open_a_pacs_study_with_its_prior_and_build_a_worklist(
    browser, tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:  # type: ignore[no-untyped-def]
    if pacs.missing():
        pytest.skip(pacs.missing() or "")
    dicom = (data_dir / "dicom" / "siim_chest_pa.dcm").read_bytes()
    (tmp_path / "orthanc").mkdir()
    with pacs.orthanc(tmp_path / "orthanc") as server:
        stored(server, dicom, "20250105")
        stored(server, dicom, "20250310")
        monkeypatch.setenv("RADPILOT_DICOMWEB_URL", server.dicomweb)
        monkeypatch.setenv("RADPILOT_DICOMWEB_USERNAME", pacs.USER)
        monkeypatch.setenv("RADPILOT_DICOMWEB_PASSWORD", pacs.PASSWORD)
        with running_server(tmp_path / "state") as url:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto(url, wait_until="domcontentloaded")
            page.wait_for_selector("#pacs-patient textarea", timeout=60_000)
            page.locator("#pacs-patient textarea").fill(PATIENT)
            page.locator("#pacs-search").click()
            expect(page.locator("#pacs-studies input")).to_have_value(
                re.compile("^2025-03-10"), timeout=30_000
            )  # the newest study is chosen
            page.locator("#pacs-open").click()
            page.wait_for_selector("#current-preview img", timeout=60_000)
            assert "as the prior" in page.inner_text("body")  # the toast says which prior
            page.locator("#question textarea").fill("Has anything changed since the prior?")
            page.locator("#ask").click()
            page.wait_for_selector("#chat sup", timeout=180_000)
            assert "prior" in page.inner_text("#chat").lower()
            page.locator("#chat details summary").first.click()
            assert "compare_studies" in page.inner_text("#chat details")

            page.get_by_role("tab", name="Worklist").click()
            page.locator("#worklist-from textarea").fill("2025-03-01")
            page.locator("#worklist-to textarea").fill("2025-03-31")
            page.locator("#worklist-build").click()
            page.wait_for_function(
                "document.querySelector('#worklist').textContent.includes('2025-03-10')",
                timeout=120_000,
            )
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "worklist.png"), full_page=True)
            shown = page.locator("#worklist").text_content() or ""
            assert "2025-01-05" not in shown, "outside the range"
