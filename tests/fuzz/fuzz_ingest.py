"""Coverage-guided fuzzing of the study loader (PNG, JPEG, DICOM bytes -> pixels) with atheris.

The target is what `StudyStore.ingest` runs before it stores anything: `decode_image` (format
sniffing, Pillow or pydicom decoding, de-identification) and `check_quality`. A
`RadpilotError` (an `IngestError` with a clear reason) is the expected answer to a bad file;
any other exception, or pixels outside radpilot's convention (2-D float32, finite, in [0, 1]),
is a crash. The corpus is seeded from files built in code (tests/factories.py).

    python tests/fuzz/fuzz_ingest.py -max_total_time=60        # corpus in a temporary folder
    python tests/fuzz/fuzz_ingest.py CORPUS_DIR -runs=100000    # seeds and grows CORPUS_DIR

Any libFuzzer flag works; a crashing input is written to ./crash-<sha1> (`-artifact_prefix=`)
and `python tests/fuzz/fuzz_ingest.py crash-<sha1>` runs it again.
"""

from __future__ import annotations

import io
import logging
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script: make `radpilot` and `tests` importable
    sys.path.insert(0, str(ROOT))

# Small enough that any header within the limit decodes in milliseconds.
MAX_MEGAPIXELS = 1.0
FILENAMES = ("", "upload.png", "upload.dcm")


def quiet() -> None:
    """pydicom and Pillow warn on every odd header; a fuzzer makes millions of them."""
    warnings.simplefilter("ignore")
    logging.getLogger("pydicom").setLevel(logging.CRITICAL)
    logging.getLogger("PIL").setLevel(logging.CRITICAL)


def ingest_one(data: bytes, filename: str = "") -> np.ndarray | None:
    """Decode and QC one file as the study store does; the pixels, or None when it was refused
    with a `RadpilotError`. Raises for anything that is a bug."""
    from radpilot.core.errors import RadpilotError
    from radpilot.tools.dicom import Deidentifier
    from radpilot.tools.imaging import decode_image
    from radpilot.tools.qc import check_quality

    try:
        image = decode_image(
            data,
            filename=filename,
            max_megapixels=MAX_MEGAPIXELS,
            deidentifier=Deidentifier(b"fuzz" * 8),
        )
    except RadpilotError:
        return None
    pixels = image.pixels
    if pixels.ndim != 2 or pixels.dtype != np.float32:
        raise AssertionError(f"pixels are {pixels.dtype} of shape {pixels.shape}, not 2-D float32")
    if pixels.size and not (
        np.isfinite(pixels).all() and 0.0 <= pixels.min() <= pixels.max() <= 1.0
    ):
        raise AssertionError("pixels are not finite values in [0, 1]")
    check_quality(image)
    return pixels


def seeds() -> dict[str, bytes]:
    """A valid PNG (8- and 16-bit), JPEG and DICOM (both photometric interpretations)."""
    from PIL import Image

    from tests.factories import chest_like, make_dicom, png_bytes

    small = chest_like(64, 72)
    jpeg = io.BytesIO()
    Image.fromarray((small * 255).astype(np.uint8)).save(jpeg, format="JPEG", quality=80)
    return {
        "seed.png": png_bytes(small),
        "seed16.png": png_bytes(small, mode="I;16"),
        "seed.jpg": jpeg.getvalue(),
        "seed.dcm": make_dicom(pixels=small, bits=12, window=(2048.0, 4096.0)),
        "seed-mono1.dcm": make_dicom(pixels=small, bits=8, photometric="MONOCHROME1"),
    }


def test_one_input(data: bytes) -> None:
    """atheris's entry point: the first byte picks the file name, the rest is the file."""
    if not data:
        return
    ingest_one(data[1:], FILENAMES[data[0] % len(FILENAMES)])


def main(argv: list[str]) -> None:
    import atheris

    quiet()
    with atheris.instrument_imports(include=["radpilot", "pydicom", "PIL"]):
        import PIL.Image  # noqa: F401
        import pydicom  # noqa: F401

        import radpilot.tools.dicom  # noqa: F401
        import radpilot.tools.imaging  # noqa: F401
        import radpilot.tools.qc  # noqa: F401
    args = list(argv)
    inputs = [Path(arg) for arg in args[1:] if not arg.startswith("-")]
    if not inputs:
        inputs = [Path(tempfile.mkdtemp(prefix="radpilot-fuzz-"))]
        args.append(str(inputs[0]))
    if inputs[0].is_dir():  # fuzzing (not re-running crash files): libFuzzer grows the corpus
        for name, data in seeds().items():
            (inputs[0] / name).write_bytes(b"\x00" + data)  # first byte 0: no file name
    atheris.Setup(args, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
