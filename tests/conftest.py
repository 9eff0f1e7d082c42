"""Shared fixtures: an isolated state directory per test, and the development data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


@pytest.fixture(autouse=True)
def isolated_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own RADPILOT_STATE_DIR: nothing leaks between tests or to $HOME."""
    state = tmp_path / "state"
    monkeypatch.setenv("RADPILOT_STATE_DIR", str(state))
    return state


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The development data, or a skip that says where it was looked for."""
    from radpilot.settings import Settings

    data = Settings().data
    if data is None or not (data / "nih").is_dir():
        pytest.skip(
            "development data not found: set RADPILOT_DATA or place it at ../shared/data/cxr"
        )
    return data
