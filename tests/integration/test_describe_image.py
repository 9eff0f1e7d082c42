"""`describe_image` over HTTP against a loopback server replaying a chat-completion reply.

See tests/fixtures/vlm/README.md: the reply is written by hand in vLLM's format (no
vision-language model can be served here); the request, the image upload and the error paths
are real.
"""

from __future__ import annotations

import base64
import io
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from radpilot.assembly import build_registry
from radpilot.settings import Settings
from radpilot.tools.base import ToolContext
from radpilot.tools.describe import MAX_SIDE
from tests.factories import chest_like, png_bytes

pytestmark = pytest.mark.integration
REPLY = Path(__file__).parents[1] / "fixtures" / "vlm" / "chat_completion.json"


class ReplayServer(ThreadingHTTPServer):
    received: list[dict[str, Any]]


class ReplayHandler(BaseHTTPRequestHandler):
    server: ReplayServer

    def do_POST(self) -> None:  # noqa: N802 (the http.server naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.received.append({"path": self.path, "body": body})
        payload = REPLY.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass


@pytest.fixture
def replay() -> Iterator[ReplayServer]:
    server = ReplayServer(("127.0.0.1", 0), ReplayHandler)
    server.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def context_with_vlm(tmp_path: Path, url: str) -> ToolContext:
    settings = Settings(state_dir=tmp_path, vlm_url=url, vlm_model="vlm-under-test",
                        llm_stream=False, llm_retries=0)  # fmt: skip
    return ToolContext.create(settings)


def test_the_image_goes_out_as_a_png_and_the_words_come_back_generative(
    tmp_path: Path, replay: ReplayServer
) -> None:
    url = f"http://127.0.0.1:{replay.server_address[1]}/v1"
    context = context_with_vlm(tmp_path, url)
    study = context.studies.ingest(png_bytes(chest_like(900, 700)), "chest.png")
    registry = build_registry(context.settings)
    result = registry.run("describe_image", {"study_id": study.id}, context)
    assert result.ok and result.output is not None
    assert result.output["generative"] is True
    assert "small pleural effusion" in result.output["text"]
    assert any("unconfirmed" in item for item in result.output["limitations"])
    request = replay.received[0]
    assert request["path"] == "/v1/chat/completions"
    assert request["body"]["model"] == "vlm-under-test"
    parts = request["body"]["messages"][0]["content"]
    image_url = next(p["image_url"]["url"] for p in parts if p["type"] == "image_url")
    assert image_url.startswith("data:image/png;base64,")
    image = Image.open(io.BytesIO(base64.b64decode(image_url.split(",", 1)[1])))
    assert image.format == "PNG" and max(image.size) == MAX_SIDE


def test_a_down_vlm_is_a_clean_tool_failure(tmp_path: Path) -> None:
    from tests.server import free_port

    context = context_with_vlm(tmp_path, f"http://127.0.0.1:{free_port()}/v1")
    study = context.studies.ingest(png_bytes(chest_like()), "chest.png")
    result = build_registry(context.settings).run("describe_image", {"study_id": study.id},
                                                    context)  # fmt: skip
    assert not result.ok and result.error is not None
    assert result.error.code == "vlm_unavailable" and "unavailable" in result.error.message
