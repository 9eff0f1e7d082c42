"""segment_region with a tiny SAM built by segment-anything's own builder and saved in the
checkpoint format, so the real loading (`_build_sam`) and prediction (`SamPredictor`) run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from radpilot.assembly import build_registry
from radpilot.core.contracts import ModelIdentity
from radpilot.core.errors import ToolArgumentError
from radpilot.settings import Settings
from radpilot.tools.base import ToolContext
from radpilot.tools.models.sam import SamArchitecture, SamSegmenter
from tests.factories import chest_like, png_bytes

pytestmark = pytest.mark.integration

TINY = SamArchitecture(embed_dim=32, depth=2, num_heads=2, global_attn_indexes=[1])


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from segment_anything.build_sam import _build_sam

    torch.manual_seed(0)
    model = _build_sam(
        encoder_embed_dim=TINY.embed_dim, encoder_depth=TINY.depth,
        encoder_num_heads=TINY.num_heads, encoder_global_attn_indexes=TINY.global_attn_indexes,
    )  # fmt: skip
    path = tmp_path_factory.mktemp("sam") / "sam_tiny.pth"
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def segmenter(tiny_checkpoint: Path) -> SamSegmenter:
    identity = ModelIdentity(name="sam-tiny", version="test", sha256=None)
    return SamSegmenter(tiny_checkpoint, TINY, identity)


def test_box_and_point_prompts_give_masks_of_the_image_size(segmenter: SamSegmenter) -> None:
    pixels = chest_like(200, 240)
    by_box = segmenter.segment("st_a", pixels, box=(40, 50, 80, 60), point=None)
    assert by_box.mask.shape == (200, 240) and by_box.mask.dtype == bool
    assert not by_box.encoder_cached
    by_point = segmenter.segment("st_a", pixels, box=None, point=(100, 100))
    assert by_point.mask.shape == (200, 240)
    assert by_point.encoder_cached  # the second prompt reused the image embedding
    assert np.isfinite(by_point.score)


def test_the_embedding_cache_is_per_study(segmenter: SamSegmenter) -> None:
    first = segmenter.segment("st_b", chest_like(128, 128, seed=1), box=(10, 10, 50, 50),
                              point=None)  # fmt: skip
    other = segmenter.segment("st_c", chest_like(128, 128, seed=2), box=(10, 10, 50, 50),
                              point=None)  # fmt: skip
    assert not first.encoder_cached and not other.encoder_cached


@pytest.fixture
def context(tmp_path: Path) -> ToolContext:
    return ToolContext.create(Settings(), root=tmp_path)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({}, "give a box"),
        ({"box": [10, 10, 0, 40]}, "the box is empty"),
        ({"box": [10, 10, 40, 40], "weights": "sam-vit-x"}, "weights"),
    ],
)
def test_bad_prompts_are_argument_errors(
    context: ToolContext, arguments: dict[str, object], message: str
) -> None:
    study = context.studies.ingest(png_bytes(chest_like(64, 64)), "cxr.png")
    with pytest.raises(ToolArgumentError, match=message):
        build_registry(context.settings).run(
            "segment_region", {"study_id": study.id, **arguments}, context
        )


@pytest.mark.parametrize(
    ("prompt", "message"),
    [({"box": [50, 50, 40, 40]}, "outside the 64x64 image"), ({"point": [70, 3]}, "outside")],
)
def test_prompts_outside_the_image_are_clear_errors(
    context: ToolContext, prompt: dict[str, object], message: str
) -> None:
    study = context.studies.ingest(png_bytes(chest_like(64, 64)), "cxr.png")
    arguments = {"study_id": study.id, **prompt}
    result = build_registry(context.settings).run("segment_region", arguments, context)
    assert not result.ok and result.error is not None
    assert result.error.code == "bad_prompt" and message in result.error.message


def test_missing_weights_say_how_to_install_them(context: ToolContext) -> None:
    study = context.studies.ingest(png_bytes(chest_like(64, 64)), "cxr.png")
    result = build_registry(Settings()).run(
        "segment_region", {"study_id": study.id, "box": [5, 5, 20, 20]}, context
    )
    assert not result.ok and result.error is not None
    assert "radpilot models import" in result.error.message
