"""A real `radpilot serve` process on a free loopback port, for API and browser tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class ServerProcess:
    """A started server: its URL and process (for its PID, or to kill it on purpose)."""

    url: str
    process: subprocess.Popen[str]


@contextmanager
def server_process(
    state_dir: Path, *extra: str, output: IO[str] | None = None, ready_timeout: float = 180
) -> Iterator[ServerProcess]:
    """Start `radpilot serve` on `state_dir`, wait until /readyz is 200, stop it on exit.

    `output` receives the server's stdout and stderr (a file, for tests that read its logs);
    without it they go to a pipe nobody reads, which is fine for a server that logs little.
    Killing `process` inside the block is allowed: the clean-up skips a dead process."""
    port = free_port()
    env = {**os.environ, "RADPILOT_STATE_DIR": str(state_dir), "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "radpilot.app.cli", "serve", "--port", str(port), *extra],
        env=env, stdout=output or subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, process, ready_timeout)
        yield ServerProcess(url=url, process=process)
    finally:
        stop(process)


def stop(process: subprocess.Popen[Any]) -> None:
    """Terminate a test server, and kill it if it has not exited within 15 s (open browser
    connections can hold uvicorn up)."""
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=15)


def _wait_ready(url: str, process: subprocess.Popen[str], timeout: float) -> None:
    """Like `Client.wait_ready`, but fails at once when the server exits (a restart on a broken
    state dir should fail in seconds, not after the timeout) and says why it never got ready."""
    deadline = time.monotonic() + timeout
    detail = "no answer"
    with httpx.Client(base_url=url, timeout=5) as http:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"the server exited with code {process.returncode} at start")
            try:
                reply = http.get("/readyz")
                if reply.status_code == 200:
                    return
                detail = reply.json().get("detail", reply.text)
            except (httpx.TransportError, ValueError):
                pass
            time.sleep(0.5)
    raise TimeoutError(f"server not ready within {timeout:.0f} s ({detail})")


def wait_until_answers(
    url: str,
    process: subprocess.Popen[Any],
    *,
    timeout: float,
    what: str,
    output: Callable[[], str] = lambda: "",
) -> None:
    """Poll a helper server started as `process` (vLLM, Ray Serve, Chroma) until `url` answers
    200; fail at once, with the end of its output, if the process exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ProcessExitedError(f"{what} exited ({process.returncode}): {output()}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{what} did not answer {url} within {timeout:.0f} s: {output()}")


class ProcessExitedError(RuntimeError):
    pass


@contextmanager
def running_server(state_dir: Path, *extra: str) -> Iterator[str]:
    with server_process(state_dir, *extra) as server:
        yield server.url
