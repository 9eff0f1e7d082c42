from pathlib import Path

import pytest

from radpilot.settings import Settings


def test_environment_variables_use_the_radpilot_prefix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("RADPILOT_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("RADPILOT_MODEL_DIR", str(tmp_path / "weights"))
    monkeypatch.setenv("RADPILOT_DEVICE", "cuda")
    monkeypatch.setenv("RADPILOT_LLM_URL", "http://localhost:8000/v1")
    monkeypatch.setenv("RADPILOT_LLM_MODEL", "tiny")
    settings = Settings()
    assert settings.data == tmp_path / "data"
    assert settings.weights_dir == tmp_path / "weights"
    assert settings.device == "cuda"
    assert settings.uses_llm_planner
    assert settings.llm_model == "tiny"


def test_defaults_are_offline_and_embedded(isolated_state: Path) -> None:
    settings = Settings()
    assert settings.state_dir == isolated_state
    assert settings.weights_dir == isolated_state / "models"
    assert settings.device == "cpu"
    assert not settings.uses_llm_planner
    assert settings.max_image_megapixels == 50


def test_an_empty_llm_url_means_the_embedded_planner(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RADPILOT_LLM_URL", "")
    assert not Settings().uses_llm_planner


def test_an_invalid_device_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RADPILOT_DEVICE", "tpu")
    with pytest.raises(ValueError, match="device"):
        Settings()
