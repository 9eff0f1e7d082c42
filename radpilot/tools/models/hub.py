"""The model hub: every model a tool uses, loaded one way."""

from __future__ import annotations

import threading

from radpilot.tools.models.anatomy_model import AnatomySegmenter, shipped_anatomy_segmenter
from radpilot.tools.models.batching import BATCH_WAIT_S
from radpilot.tools.models.catalog import CATALOG
from radpilot.tools.models.detector import StarterDetector, shipped_detector
from radpilot.tools.models.findings import (
    CLASSIFIER_PREFERENCE,
    FindingsModel,
    StarterFindingsModel,
    XrvFindingsModel,
)
from radpilot.tools.models.pspnet import PspnetSegmenter, pspnet_installed, shared_pspnet
from radpilot.tools.models.sam import SamSegmenter, installed_sam, shared_sam
from radpilot.tools.models.store import ModelStore
from radpilot.tools.models.view_model import ViewClassifier, shipped_view_classifier


class ModelHub:
    """The one way every model is loaded: the findings classifier, the box detector, the
    projection classifier, the heart-and-lung U-Net, PSPNet and SAM, each on this hub's
    device, once per process, on first use (the loaders are process-wide, so two hubs share
    one copy of the weights)."""

    def __init__(
        self, store: ModelStore, device: str = "cpu", batch_wait_s: float = BATCH_WAIT_S
    ) -> None:
        self.store = store
        self.device = device
        self.batch_wait_s = batch_wait_s
        self._findings: FindingsModel | None = None
        self._lock = threading.Lock()

    def detector(self) -> StarterDetector | None:
        """The shipped box detector on this hub's device; None where a build has no bundle."""
        return shipped_detector(self.device, self.batch_wait_s)

    def view(self) -> ViewClassifier | None:
        """The shipped projection classifier (PA/AP) on this hub's device; None where a build
        has no bundle."""
        return shipped_view_classifier(self.device)

    def anatomy(self) -> AnatomySegmenter:
        """The shipped heart-and-lung segmenter on this hub's device."""
        return shipped_anatomy_segmenter(self.device)

    def pspnet(self) -> PspnetSegmenter | None:
        """torchxrayvision's PSPNet (14 structures) when its weights are installed, else None."""
        if not pspnet_installed(self.store):
            return None
        return shared_pspnet(self.store.root, self.device)

    def sam(self, wanted: str | None = None) -> SamSegmenter:
        """The installed segment-anything weights (`wanted`, or the preferred ones)."""
        return shared_sam(self.store.root, installed_sam(self.store, wanted), self.device)

    def findings_model(self) -> FindingsModel:
        with self._lock:
            if self._findings is None:
                self._findings = self._best_installed_findings_model()
            return self._findings

    def _best_installed_findings_model(self) -> FindingsModel:
        for name in CLASSIFIER_PREFERENCE:
            if CATALOG[name].bundled:
                return StarterFindingsModel(device=self.device, batch_wait_s=self.batch_wait_s)
            if self.store.status(name).state != "missing":
                return XrvFindingsModel(name, self.store, self.device, self.batch_wait_s)
        raise AssertionError("the starter classifier is always available")
