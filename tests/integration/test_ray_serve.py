"""One code path, local or remote: the agent's imaging tools served by Ray Serve replicas on a
local Ray instance, called through the registry when RADPILOT_TOOLS_URL is set."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from radpilot.assembly import build_agent
from radpilot.settings import Settings
from tests.factories import chest_like, png_bytes
from tests.server import free_port, wait_until_answers

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
SERVE = """
import time, ray
from ray import serve
ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
serve.start(http_options={{"host": "127.0.0.1", "port": {port}}})
from deploy.ray.tools_app import tools
serve.run(tools, route_prefix="/tools")
print("READY", flush=True)
while True:
    time.sleep(1)
"""


@pytest.fixture(scope="module")
def tool_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    pytest.importorskip("ray.serve", reason="Ray Serve is not installed (pip install ray[serve])")
    state = tmp_path_factory.mktemp("shared-state")
    port = free_port()
    env = {**os.environ, "RADPILOT_STATE_DIR": str(state), "RAY_USAGE_STATS_ENABLED": "0",
           "PYTHONPATH": str(ROOT)}  # fmt: skip
    log = state.parent / "ray-serve.log"
    with log.open("w") as out:  # a file, not a pipe: nobody reads it while the server runs
        process = subprocess.Popen(
            [sys.executable, "-c", SERVE.format(port=port)], cwd=ROOT, env=env,
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}/tools"
    try:
        wait_until_answers(f"{url}/tools", process, timeout=240, what="Ray Serve",
                           output=lambda: log.read_text()[-3000:])  # fmt: skip
        yield url, state
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def test_a_turn_runs_its_imaging_tools_on_ray_serve(tool_service: tuple[str, Path]) -> None:
    url, state = tool_service
    served = httpx.get(f"{url}/tools").json()
    assert "classify_findings" in served and "search_guidelines" not in served
    agent = build_agent(Settings(state_dir=state, tools_url=url))
    session = agent.new_session()
    agent.add_study(session, png_bytes(chest_like(seed=5)), "chest.png")
    events = list(agent.stream(session, "Is there a pleural effusion?"))
    ran = [e.data for e in events if e.kind == "tool_end"]
    assert ran and all(e["ok"] for e in ran), ran
    assert ran[0]["tool"] == "classify_findings"
    answer = agent.state(session).answer
    assert answer is not None and answer.findings and all(c.evidence for c in answer.claims)
