"""Real radiographs: the SIIM DICOM (JPEG Baseline) and every development PNG."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from radpilot.tools.studies import StudyStore

pytestmark = pytest.mark.integration


@pytest.fixture
def store(tmp_path: Path) -> StudyStore:
    return StudyStore(tmp_path, secret=b"r" * 32)


def test_the_real_jpeg_baseline_dicom_loads_and_passes_qc(
    data_dir: Path, store: StudyStore
) -> None:
    study = store.ingest_file(data_dir / "dicom" / "siim_chest_pa.dcm")
    assert (study.modality, study.view, study.width, study.height) == ("CR", "PA", 1024, 1024)
    assert study.spacing_mm == (0.168, 0.168)
    assert study.qc.ok and study.qc.issues == []
    pixels = store.pixels(study.id)
    assert pixels.shape == (1024, 1024) and 0.3 < float(pixels.mean()) < 0.7


def test_every_development_png_loads_and_passes_qc(data_dir: Path, store: StudyStore) -> None:
    images = sorted(data_dir.glob("*/images/*.png"))
    assert len(images) > 1000
    refused = [path.name for path in images if not store.ingest_file(path).qc.ok]
    assert refused == [], f"QC refused real radiographs: {refused[:10]}"


def test_model_input_follows_the_torchxrayvision_convention(
    data_dir: Path, store: StudyStore
) -> None:
    import torchxrayvision as xrv

    from radpilot.tools.imaging import to_model_input

    path = next(iter(sorted((data_dir / "nih" / "images").glob("*.png"))))
    ours = to_model_input(store.pixels(store.ingest_file(path).id), size=224)
    # xrv's own recipe: 8-bit image -> normalize(255) -> centre crop -> resize to 224.
    from PIL import Image

    raw = np.asarray(Image.open(path).convert("L"), dtype=np.float32)
    theirs = xrv.datasets.normalize(raw, 255)[None, ...]
    theirs = xrv.datasets.XRayCenterCrop()(theirs)
    theirs = xrv.datasets.XRayResizer(224)(theirs)
    assert ours.shape == theirs.shape == (1, 224, 224)
    assert np.abs(ours - theirs).mean() < 15.0  # of a 2048-wide range: resampling differs only


def test_cli_prints_modality_size_and_qc_of_the_real_dicom(data_dir: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "radpilot.app.cli",
            "tools",
            "run",
            "image_info",
            "--image",
            str(data_dir / "dicom" / "siim_chest_pa.dcm"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)["output"]
    assert output["modality"] == "CR" and output["width"] == 1024 and output["qc_ok"]


def test_deid_of_the_real_dicom_removes_its_identifiers(data_dir: Path, tmp_path: Path) -> None:
    import pydicom

    source = data_dir / "dicom" / "siim_chest_pa.dcm"
    original = pydicom.dcmread(source)
    identifiers = [
        str(original.PatientID),
        str(original.StudyInstanceUID),
        str(original.SOPInstanceUID),
    ]
    from radpilot.app.cli import main

    assert main(["deid", str(source), str(tmp_path / "out.dcm")]) == 0
    cleaned = (tmp_path / "out.dcm").read_bytes()
    for text in identifiers:
        assert text.encode() not in cleaned
    assert pydicom.dcmread(tmp_path / "out.dcm").pixel_array.shape == (1024, 1024)
