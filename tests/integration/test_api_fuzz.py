"""Schemathesis over the server's own OpenAPI schema (coverage, fuzzing and stateful phases)
with every check (`-c all`): no generated request gets a 5xx, schema-valid requests are
accepted, schema-invalid ones are refused, responses match their declared status codes,
content types and bodies, and undeclared methods get 405. The one exception the schema
cannot express is written, with its reason, in schemathesis.toml next to this file."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.server import running_server

pytestmark = pytest.mark.integration

CONFIG = Path(__file__).with_name("schemathesis.toml")


def test_the_schema_tells_the_truth(tmp_path: Path, data_dir: Path) -> None:
    cli = shutil.which("st", path=str(Path(sys.executable).parent))
    if cli is None:
        pytest.skip("schemathesis is not installed (pip install -e '.[dev]')")
    with running_server(tmp_path / "state") as url:
        result = subprocess.run(
            # A generous request timeout: the checks are about conformance, not latency, and a
            # first turn on a busy 2-core CI machine (models loading) can take over 10 s.
            [cli, "--config-file", str(CONFIG), "run", f"{url}/openapi.json", "--checks", "all",
             "--max-examples", "10", "--seed", "1", "--request-timeout", "120"],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:]
    assert " passed" in result.stdout and "failed" not in result.stdout.split("SUMMARY")[-1]
