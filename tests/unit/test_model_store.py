"""The weight store with files in the exact formats the real loaders read."""

from pathlib import Path

import numpy as np
import pytest
import torch

from radpilot.core.errors import RadpilotError
from radpilot.core.findings import NIH_FINDINGS
from radpilot.tools.models.catalog import CATALOG
from radpilot.tools.models.findings import StarterFindingsModel, XrvFindingsModel
from radpilot.tools.models.hub import ModelHub
from radpilot.tools.models.store import ModelStore, WeightsMissingError, sha256_of
from tests.factories import chest_like


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    return ModelStore(tmp_path / "models")


@pytest.fixture(scope="module")
def xrv_densenet_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained DenseNet pickled as torchxrayvision's release files are (a whole module)."""
    import torchxrayvision as xrv

    folder = tmp_path_factory.mktemp("brought-by-hand")
    path = folder / CATALOG["densenet121-res224-all"].filename
    torch.save(xrv.models.DenseNet(weights=None), path)
    return path


def test_every_known_weight_says_where_it_comes_from() -> None:
    for weights in CATALOG.values():
        assert weights.url and weights.licence and weights.intended_use
        assert weights.filename and weights.folder
    assert {"densenet121-res224-all", "densenet121-res224-nih", "densenet121-res224-chex",
            "densenet121-res224-mimic_ch", "densenet121-res224-rsna", "xrv-pspnet-chestx-det",
            "sam-vit-b", "sam-vit-l", "sam-vit-h", "medsam-vit-b",
            "starter-classifier"} <= set(CATALOG)  # fmt: skip


def test_a_missing_weight_says_how_to_get_it(store: ModelStore) -> None:
    assert store.status("densenet121-res224-nih").state == "missing"
    with pytest.raises(WeightsMissingError) as error:
        store.require("densenet121-res224-nih")
    assert "radpilot models import --from" in error.value.message
    assert "radpilot models pull densenet121-res224-nih" in error.value.message


def test_unknown_weights_are_a_clear_error(store: ModelStore) -> None:
    with pytest.raises(RadpilotError, match="unknown weights"):
        store.status("densenet999")


def test_import_records_a_hash_and_verify_catches_tampering(
    store: ModelStore, xrv_densenet_file: Path
) -> None:
    [status] = store.import_from(xrv_densenet_file.parent)
    assert status.name == "densenet121-res224-all"
    assert status.state == "verified" and status.sha256 == sha256_of(xrv_densenet_file)
    installed = store.path_of("densenet121-res224-all")
    assert installed.parent == store.root / "xrv"  # the cache_dir layout xrv expects
    with installed.open("ab") as handle:
        handle.write(b"tampered")
    assert store.status("densenet121-res224-all", verify=True).state == "corrupt"


def test_sam_checkpoints_are_checked_against_their_name_prefix(
    store: ModelStore, tmp_path: Path
) -> None:
    folder = tmp_path / "sam"
    folder.mkdir()
    (folder / CATALOG["sam-vit-b"].filename).write_bytes(b"not the real checkpoint")
    [status] = store.import_from(folder)
    assert status.state == "corrupt" and "not installed" in status.detail
    assert store.status("sam-vit-b").state == "missing"


def test_import_from_a_folder_without_known_files_is_an_error(
    store: ModelStore, tmp_path: Path
) -> None:
    (tmp_path / "random.bin").write_bytes(b"x")
    with pytest.raises(RadpilotError, match="no known weight file"):
        store.import_from(tmp_path)


def test_the_real_xrv_loader_reads_an_imported_densenet(
    store: ModelStore, xrv_densenet_file: Path
) -> None:
    store.import_from(xrv_densenet_file.parent)
    model = XrvFindingsModel("densenet121-res224-all", store)
    probabilities = model.predict([chest_like(256, 256)])
    assert probabilities.shape == (1, len(NIH_FINDINGS))
    assert np.isfinite(probabilities).all()
    assert set(model.covered) == set(NIH_FINDINGS)
    heatmap = model.attribution(chest_like(256, 256), "Effusion")
    assert heatmap.shape == (224, 224) and heatmap.min() >= 0 and heatmap.max() <= 1


def test_the_hub_prefers_canonical_weights_and_falls_back_to_the_starter(
    store: ModelStore, xrv_densenet_file: Path
) -> None:
    assert isinstance(ModelHub(store).findings_model(), StarterFindingsModel)
    store.import_from(xrv_densenet_file.parent)
    hub = ModelHub(store)
    assert isinstance(hub.findings_model(), XrvFindingsModel)
    assert hub.findings_model() is hub.findings_model()  # loaded once


def test_the_real_pspnet_loader_reads_its_checkpoint_format(tmp_path: Path) -> None:
    import torchxrayvision as xrv
    from torchxrayvision.baseline_models.chestx_det.ptsemseg.pspnet import pspnet

    weights = CATALOG["xrv-pspnet-chestx-det"]
    state = {f"module.{k}": v for k, v in pspnet(len(weights.labels)).state_dict().items()}
    folder = tmp_path / "xrv"
    folder.mkdir()
    torch.save(state, folder / weights.filename)  # DataParallel-style keys, as released
    model = xrv.baseline_models.chestx_det.PSPNet(cache_dir=str(folder))
    assert model.targets == weights.labels


def test_the_bundled_starter_has_a_complete_model_card() -> None:
    model = StarterFindingsModel()
    card = model.card
    assert card.sha256 == sha256_of(ModelStore(Path("unused")).path_of("starter-classifier"))
    assert "NIH" in card.licence and card.limitations and card.training_data
    assert set(model.thresholds) == set(NIH_FINDINGS)
    assert "test_mean_auroc" in card.metrics
    assert ModelStore(Path("unused")).status("starter-classifier", verify=True).state == "verified"


def test_pull_failure_says_how_to_install_by_hand(
    store: ModelStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    unreachable = CATALOG["densenet121-res224-nih"].model_copy(
        update={"url": "http://127.0.0.1:9/nih.pt"}  # the discard port: nothing listens
    )
    monkeypatch.setitem(CATALOG, "densenet121-res224-nih", unreachable)
    with pytest.raises(RadpilotError) as error:
        store.pull("densenet121-res224-nih")
    assert "cannot download" in error.value.message
    assert "radpilot models import --from" in error.value.message
    assert store.status("densenet121-res224-nih").state == "missing"
