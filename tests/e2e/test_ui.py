"""The chat UI in a real browser (Debian's chromium driven by Playwright) against a real
`radpilot serve`. The screenshot is kept in tests/e2e/artifacts/ for people to look at."""

import shutil
from pathlib import Path

import pytest

from tests.server import running_server

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update"]  # fmt: skip
ARTIFACTS = Path(__file__).parent / "artifacts"


@pytest.fixture(scope="module")
def browser():  # type: ignore[no-untyped-def]
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with playwright.sync_playwright() as driver:
        instance = driver.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield instance
        instance.close()


def test_ask_about_an_uploaded_study(browser, tmp_path: Path, data_dir: Path) -> None:  # type: ignore[no-untyped-def]
    image = data_dir / "nih" / "images" / "00000032_037.png"
    with running_server(tmp_path / "state") as url:
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.goto(url, wait_until="domcontentloaded")
        page.wait_for_selector("#question textarea", timeout=60_000)
        assert "Decision support, not a diagnosis" in page.inner_text("body")
        page.locator("#current-study input[type=file]").set_input_files(str(image))
        page.wait_for_selector("#current-preview img", timeout=30_000)
        page.locator("#question textarea").fill("Is there cardiomegaly?")
        page.locator("#ask").click()
        page.wait_for_selector("#chat sup", timeout=180_000)  # citation markers
        chat = page.inner_text("#chat")
        assert "Cardiomegaly" in chat and "[E1]" in chat
        page.locator("#chat details summary").first.click()  # a marker opens its evidence
        assert "classify_findings" in page.inner_text("#chat details")
        # A follow-up about the finding in focus: "it" is the cardiomegaly, now localized.
        page.locator("#question textarea").fill("Where is it?")
        page.locator("#ask").click()
        page.locator("#chat").get_by_text("is strongest").first.wait_for(timeout=180_000)
        page.get_by_role("tab", name="Overlays").click()
        page.wait_for_selector("#overlays img", timeout=30_000)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "ask.png"), full_page=True)
        page.get_by_role("tab", name="Findings").click()
        assert "Effusion" in page.inner_text("#findings")
