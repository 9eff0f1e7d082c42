"""Anatomy geometry and the measurement maths on synthetic images (no models, no data)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from radpilot.core.errors import RadpilotError
from radpilot.tools.anatomy import mask_png, thoracic_span, widest_row
from radpilot.training.evaluate_ctr import heart_from_profiles


def phantom() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 200x200 'radiograph': two dark lungs, a bright heart between their lower halves."""
    yy, xx = np.mgrid[:200, :200]
    right = ((xx - 60) / 35) ** 2 + ((yy - 100) / 70) ** 2 <= 1  # image left
    left = ((xx - 140) / 35) ** 2 + ((yy - 100) / 70) ** 2 <= 1
    pixels = np.full((200, 200), 0.8, dtype=np.float32)  # soft tissue and bone: bright
    pixels[right | left] = 0.2  # aerated lung: dark
    heart = ((xx - 105) / 40) ** 2 + ((yy - 135) / 30) ** 2 <= 1
    pixels[heart] = 0.75  # the heart's shadow over the medial lungs
    return pixels, right, left


def test_thoracic_span_is_the_widest_outer_border_distance() -> None:
    _, right, left = phantom()
    span = thoracic_span(right, left)
    assert span.y == 100 and span.x_start == 25 and span.x_end == 175


def test_heart_width_follows_the_bright_silhouette() -> None:
    pixels, right, left = phantom()
    heart = widest_row(heart_from_profiles(pixels, right, left))
    assert 70 <= heart.width <= 82  # the phantom heart is 80 px wide at its widest
    assert heart.x_start < 105 < heart.x_end


def test_no_lungs_is_a_clear_error() -> None:
    empty = np.zeros((50, 50), dtype=bool)
    with pytest.raises(RadpilotError, match="both lungs"):
        thoracic_span(empty, empty)
    with pytest.raises(RadpilotError, match="heart could not be found"):
        widest_row(empty)


def test_mask_png_round_trips() -> None:
    _, right, _ = phantom()
    decoded = np.asarray(Image.open(io.BytesIO(mask_png(right))).convert("L")) > 0
    assert np.array_equal(decoded, right)


def test_the_study_cache_drops_the_least_recently_used() -> None:
    from radpilot.tools.study_cache import StudyCache

    cache: StudyCache[object] = StudyCache(capacity=2)
    items = {key: object() for key in "abc"}
    cache.put("a", items["a"])
    cache.put("b", items["b"])
    assert cache.get("a") is items["a"]
    cache.put("c", items["c"])
    assert cache.get("b") is None and cache.get("a") is items["a"]


def test_the_starter_anatomy_runs_on_the_configured_device(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from radpilot.core.contracts import ModelIdentity
    from radpilot.tools import anatomy
    from radpilot.tools.models import hub as model_hub
    from radpilot.tools.models.anatomy_model import AnatomyMasks
    from radpilot.tools.models.hub import ModelHub
    from radpilot.tools.models.store import ModelStore

    pixels, right, left = phantom()
    devices: list[str] = []

    class Segmenter:  # stands in for the U-Net: only where it was asked to run matters here
        identity = ModelIdentity(name="starter-anatomy", version="test", sha256="0" * 64)

        def predict(self, _: np.ndarray) -> AnatomyMasks:
            return AnatomyMasks(heart=pixels > 0.7, right_lung=right, left_lung=left)

    def segmenter_on(device: str = "cpu") -> Segmenter:
        devices.append(device)
        return Segmenter()

    monkeypatch.setattr(model_hub, "shipped_anatomy_segmenter", segmenter_on)
    hub = ModelHub(ModelStore(tmp_path), device="cuda")
    result = anatomy.anatomy_of("st_device_test", pixels, hub)
    assert devices == ["cuda"] and result.right_lung.any() and result.heart.any()
