"""The starter box detector's plumbing on generated tensors: label order, box conversion to
original pixels, training crops that keep boxes on their content, and the loader's outputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from radpilot.core.findings import BOX_FINDINGS, NIH_FINDINGS, finding_from_box_label
from radpilot.data.devdata import Box, NihRecord
from radpilot.tools.models.catalog import CATALOG
from radpilot.tools.models.detector import MAX_DETECTIONS, Detector, boxes_by_finding, build_fcos
from radpilot.training.train_detector import _augmented, samples_of
from tests.bundles import shipped_bundle


def test_box_classes_are_the_nih_box_labels_in_the_catalog_order() -> None:
    nih_box_labels = ["Atelectasis", "Cardiomegaly", "Effusion", "Infiltrate", "Mass",
                      "Nodule", "Pneumonia", "Pneumothorax"]  # fmt: skip
    assert [finding_from_box_label(label) for label in nih_box_labels] == list(BOX_FINDINGS)
    assert set(BOX_FINDINGS) <= set(NIH_FINDINGS)
    assert CATALOG["starter-detector"].labels == list(BOX_FINDINGS)


def test_detections_become_each_findings_strongest_boxes_in_original_pixels() -> None:
    output = {
        "boxes": torch.tensor([[10.0, 20.0, 30.0, 60.0]] * 5 + [[0.0, 0.0, 8.0, 8.0]]),
        "labels": torch.tensor([3, 3, 3, 3, 3, 2]),  # label 3 = Effusion, 2 = Cardiomegaly
        "scores": torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5, 0.4]),
    }
    found = boxes_by_finding(output, scale=2.0, left=5, top=7)

    assert set(found) == {"Effusion", "Cardiomegaly"}
    assert len(found["Effusion"]) == MAX_DETECTIONS
    assert [d.score for d in found["Effusion"]] == [0.9, 0.8, 0.7]
    assert found["Effusion"][0].box == (25.0, 47.0, 40.0, 80.0)  # x, y, w, h
    assert found["Cardiomegaly"][0].box == (5.0, 7.0, 16.0, 16.0)


def test_training_samples_map_boxes_through_the_centre_square_crop() -> None:
    image = np.zeros((300, 200), dtype=np.float32)  # taller than wide: rows 50-250 are kept
    record = NihRecord(
        image="x.png",
        patient_id="p",
        boxes=[
            Box(label="Infiltrate", xywh=(20, 60, 40, 100)),
            Box(label="Mass", xywh=(0, 0, 10, 20)),
        ],
    )
    (sample,) = samples_of([record], [image], size=100)

    assert sample.image.shape == (1, 100, 100)
    x1, y1, x2, y2, label = sample.boxes[0]
    assert (x1, y1, x2, y2) == pytest.approx((10, 5, 30, 55))
    assert BOX_FINDINGS[label - 1] == "Infiltration"
    assert len(sample.boxes) == 1  # the Mass box lies outside the kept square


def test_augmented_crops_keep_each_box_on_its_content() -> None:
    image = np.full((1, 128, 128), -1.0, dtype=np.float32)
    image[:, 40:80, 50:90] = 1.0  # a bright block, boxed
    record = NihRecord(
        image="x.png", patient_id="p", boxes=[Box(label="Mass", xywh=(50, 40, 40, 40))]
    )
    (sample,) = samples_of([record], [(image[0] + 1) / 2], size=128)
    rng = np.random.default_rng(0)
    for _ in range(20):
        augmented, target = _augmented(sample, 128, rng)
        assert augmented.shape == (1, 128, 128)
        for x1, y1, x2, y2 in target["boxes"].tolist():
            assert 0 <= x1 < x2 <= 128 and 0 <= y1 < y2 <= 128
            inside = augmented[0, int(y1) + 3 : int(y2) - 3, int(x1) + 3 : int(x2) - 3]
            assert float(inside.mean()) > 0.5  # still the bright block (after jitter)


def test_an_untrained_detector_returns_bounded_boxes_in_original_pixels() -> None:
    torch.manual_seed(0)
    detector = Detector(build_fcos(128), input_size=128)
    pixels = np.random.default_rng(0).random((160, 200)).astype(np.float32)
    found = detector.detect_all(pixels)

    assert set(found) <= set(BOX_FINDINGS)
    for boxes in found.values():
        assert len(boxes) <= MAX_DETECTIONS
        for d in boxes:
            x, y, w, h = d.box
            assert 19 <= x < x + w <= 181 and -1 <= y < y + h <= 161  # within the centre square
            assert 0 <= d.score <= 1


def test_the_shipped_detector_is_verified_and_compared_with_grad_cam() -> None:
    path, card = shipped_bundle("starter-detector")
    assert "NIH" in card.licence and card.limitations
    assert {f"test_t_iobb_{finding}" for finding in BOX_FINDINGS} == set(card.metrics)
    readme = (path.parent / "README.md").read_text()
    assert "Grad-CAM T(IoBB>0.1)" in readme and "Wang et al. 2017" in readme
