"""Cross-session micro-batching: same results as unbatched, order kept, failures isolated."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from radpilot.tools.models.batching import MicroBatcher


def square_all(items: Sequence[int]) -> list[int]:
    if any(i < 0 for i in items):
        raise ValueError(f"negative item in {list(items)}")
    return [i * i for i in items]


def run_concurrently(batcher: MicroBatcher[int, int], items: list[int]) -> list[object]:
    start = threading.Barrier(len(items))

    def one(item: int) -> object:
        start.wait()  # all callers arrive together, as concurrent sessions would
        try:
            return batcher.submit(item)
        except ValueError as error:
            return error

    with ThreadPoolExecutor(max_workers=len(items)) as pool:
        return list(pool.map(one, items))


def square_all_slowly(items: Sequence[int]) -> list[int]:
    time.sleep(0.02)  # as a forward pass takes time (and frees the GIL), requests overlap
    return square_all(items)


def test_concurrent_requests_share_batches_and_keep_their_own_results() -> None:
    batcher = MicroBatcher(square_all_slowly, max_batch=8, max_wait_s=0.05)
    items = list(range(20))
    assert run_concurrently(batcher, items) == [i * i for i in items]
    assert sum(batcher.batches) == 20 and max(batcher.batches) > 1
    assert max(batcher.batches) <= 8


def test_a_failing_item_fails_only_its_own_request() -> None:
    batcher = MicroBatcher(square_all, max_batch=8, max_wait_s=0.05)
    results = run_concurrently(batcher, [1, 2, -3, 4])
    assert results[:2] == [1, 4] and results[3] == 16
    assert isinstance(results[2], ValueError) and "-3" in str(results[2])


def test_a_lone_request_waits_at_most_the_bound() -> None:
    batcher = MicroBatcher(square_all, max_batch=8, max_wait_s=0.01)
    assert batcher.submit(7) == 49 and list(batcher.batches) == [1]


def test_a_user_asking_in_quick_succession_never_waits() -> None:
    # With nobody else in flight there is nothing to wait for: a wait of 5 s per request would
    # make these 3 back-to-back requests take 15 s.
    batcher = MicroBatcher(square_all, max_batch=8, max_wait_s=5.0)
    started = time.monotonic()
    assert [batcher.submit(i) for i in (1, 2, 3)] == [1, 4, 9]
    assert time.monotonic() - started < 5.0 and list(batcher.batches) == [1, 1, 1]


def test_a_wrong_batch_size_is_a_failure_not_a_mix_up() -> None:
    batcher = MicroBatcher(lambda items: [0], max_batch=4, max_wait_s=0.05)
    assert run_concurrently(batcher, [1, 2]) == [0, 0]  # retried one by one


@pytest.mark.parametrize("concurrent", [1, 6])
def test_the_classifier_gives_the_same_probabilities_batched_or_not(concurrent: int) -> None:
    from radpilot.tools.models.findings import StarterFindingsModel
    from tests.factories import chest_like

    model = StarterFindingsModel()
    images = [chest_like(seed=s) for s in range(concurrent)]
    alone = model.predict(images)
    with ThreadPoolExecutor(max_workers=concurrent) as pool:
        batched = list(pool.map(model.predict_one, images))
    assert np.allclose(np.stack(batched), alone, atol=1e-5)


@pytest.mark.parametrize(("wait_s", "max_batch"), [(0.02, 4), (0.0, 1), (-1.0, 1)])  # 4 on CPU
def test_the_batch_wait_is_built_into_the_classifier(wait_s: float, max_batch: int) -> None:
    from radpilot.tools.models.findings import StarterFindingsModel

    model = StarterFindingsModel(batch_wait_s=wait_s)
    assert model.batcher.max_batch == max_batch  # a wait of zero or less: every image alone
    assert model.batcher.max_wait_s == max(wait_s, 0.0)


def test_the_hub_hands_its_batch_wait_to_the_model_it_builds(tmp_path: Path) -> None:
    from radpilot.tools.models.hub import ModelHub
    from radpilot.tools.models.store import ModelStore

    model = ModelHub(ModelStore(tmp_path), batch_wait_s=0.0).findings_model()
    assert model.batcher.max_batch == 1 and model.batcher.max_wait_s == 0.0


def test_the_detector_gives_the_same_boxes_batched_or_not() -> None:
    import torch

    from radpilot.tools.models.detector import Detector, build_fcos

    torch.manual_seed(0)
    model = build_fcos(128)
    alone = Detector(model, input_size=128, batch_wait_s=0.0)
    batched = Detector(model, input_size=128, batch_wait_s=0.05)
    rng = np.random.default_rng(0)
    images = [rng.random((160, 200)).astype(np.float32) for _ in range(4)]
    with ThreadPoolExecutor(max_workers=len(images)) as pool:
        together = list(pool.map(batched.detect_all, images))
    for image, found in zip(images, together, strict=True):
        expected = alone.detect_all(image)
        assert found.keys() == expected.keys()
        for finding, boxes in found.items():
            assert [b.box for b in boxes] == [b.box for b in expected[finding]]
            assert np.allclose([b.score for b in boxes], [b.score for b in expected[finding]])
    assert alone.batcher.max_batch == 1 and sum(batched.batcher.batches) == len(images)
    assert max(batched.batcher.batches) > 1  # some shared a forward pass
