"""The triage rule on scripted probabilities: pneumothorax, then effusion, then other
findings, then unreadable studies, then the rest, each by probability. (The model here is a
script of probabilities: what is tested is the ranking rule, not a model.)"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from radpilot.app.triage import TriageSource, triage
from radpilot.core.contracts import ModelIdentity
from radpilot.core.findings import NIH_FINDINGS, OperatingPoint
from radpilot.tools.models.domain_guard import DomainCheck
from radpilot.tools.models.findings import Reading
from radpilot.tools.studies import StudyStore
from tests.factories import chest_like, png_bytes

THRESHOLD = 0.5
# Present at or above rule-in; the scripted default (0.05) is below rule-out.
POINT = OperatingPoint(rule_out=0.2, rule_in=0.6)


class ScriptedModel:
    """Returns, for each image, the probabilities scripted for its mean brightness."""

    covered = list(NIH_FINDINGS)
    thresholds = dict.fromkeys(NIH_FINDINGS, THRESHOLD)
    operating_points = dict.fromkeys(NIH_FINDINGS, POINT)
    identity = ModelIdentity(name="scripted", version="1")

    def __init__(self, script: dict[int, dict[str, float]], unlike: set[int] = frozenset()
                 ) -> None:  # fmt: skip
        self.script = script
        self.batches: list[int] = []
        self.unlike = unlike  # the markers of the images the domain-shift guard flags

    def read(self, pixels: list[np.ndarray]) -> list[Reading]:
        self.batches.append(len(pixels))
        readings = []
        for image in pixels:
            wanted = self.script[marker_of(image)]
            readings.append(Reading(np.array([wanted.get(f, 0.05) for f in NIH_FINDINGS]),
                                    np.zeros(4, dtype=np.float32)))  # fmt: skip
        return readings

    def domain_check(self, pixels: np.ndarray, reading: Reading) -> DomainCheck:
        flagged = marker_of(pixels) in self.unlike
        return DomainCheck(score=2.0 if flagged else 0.5, threshold=1.0,
                           out_of_distribution=flagged,
                           reasons=["inverted polarity?"] if flagged else [],
                           image_score=2.0 if flagged else 0.5, feature_score=0.5,
                           model=self.identity)  # fmt: skip


def marker_of(image: np.ndarray) -> int:
    return int(round(float(image[0, 0]) * 10))


def image(marker: int) -> bytes:
    pixels = chest_like(256, 256, seed=marker)
    pixels[0, 0] = marker / 10  # the script's key, read back after decoding
    return png_bytes(pixels)


def test_the_worklist_follows_the_documented_rule(tmp_path: Path) -> None:
    script = {
        1: {"Nodule": 0.7},
        2: {"Pneumothorax": 0.8},
        3: {},
        4: {"Effusion": 0.9},
        5: {"Pneumothorax": 0.95, "Effusion": 0.99},
        6: {"Mass": 0.9, "Nodule": 0.6},
    }
    model = ScriptedModel(script)
    tools = SimpleNamespace(studies=StudyStore(tmp_path, secret=b"k" * 32),
                            models=SimpleNamespace(findings_model=lambda: model))  # fmt: skip
    sources = [TriageSource(source=f"s{k}.png", read=lambda k=k: image(k)) for k in script]
    sources.insert(2, TriageSource(source="broken.png", read=lambda: b"not an image"))
    done: list[int] = []
    worklist = triage(sources, tools, batch_size=3, progress=done.append)
    order = [(item.source, item.urgency) for item in worklist.items]
    assert order == [
        ("s5.png", "pneumothorax"), ("s2.png", "pneumothorax"), ("s4.png", "effusion"),
        ("s6.png", "other finding"), ("s1.png", "other finding"),
        ("broken.png", "not assessable"), ("s3.png", "no finding"),
    ]  # fmt: skip
    assert [item.rank for item in worklist.items] == list(range(1, 8))
    assert worklist.items[3].present == ["Mass", "Nodule"]
    assert done == [3, 6, 7] and model.batches == [2, 3, 1], "batched; unreadable skipped"
    assert "not a diagnosis" in worklist.notice




def test_an_image_unlike_the_training_data_is_not_assessable(tmp_path: Path) -> None:
    # A confident Pneumothorax on an image the guard flags does not rank it first.
    model = ScriptedModel({1: {"Pneumothorax": 0.99}, 2: {"Effusion": 0.9}}, unlike={1})
    tools = SimpleNamespace(studies=StudyStore(tmp_path, secret=b"k" * 32),
                            models=SimpleNamespace(findings_model=lambda: model))  # fmt: skip
    sources = [TriageSource(source=f"s{k}.png", read=lambda k=k: image(k)) for k in (1, 2)]
    items = triage(sources, tools).items
    assert [(i.source, i.urgency) for i in items] == [("s2.png", "effusion"),
                                                      ("s1.png", "not assessable")]
    assert "unlike the training images: inverted polarity?" in items[1].reason


def test_only_a_finding_at_or_above_its_rule_in_point_counts_as_present(tmp_path: Path) -> None:
    # Pneumothorax 0.5 lies between its rule-out (0.2) and rule-in (0.6) points: indeterminate,
    # so it does not make the study urgent; an effusion exactly at rule-in does.
    model = ScriptedModel({1: {"Pneumothorax": 0.5}, 2: {"Effusion": 0.6}})
    tools = SimpleNamespace(studies=StudyStore(tmp_path, secret=b"k" * 32),
                            models=SimpleNamespace(findings_model=lambda: model))  # fmt: skip
    sources = [TriageSource(source=f"s{k}.png", read=partial(image, k)) for k in (1, 2)]
    items = triage(sources, tools).items
    assert [(item.source, item.urgency, item.present) for item in items] == [
        ("s2.png", "effusion", ["Effusion"]), ("s1.png", "no finding", [])]  # fmt: skip
    assert items[1].reason == "no finding at or above its rule-in point"
