"""Test files made on the fly: DICOMs in every photometric interpretation and bit depth,
PNGs, and deliberately broken inputs. No binary blobs live in the repository."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

PATIENT_NAME = "Doe^Johanna^Q"
PATIENT_ID = "MRN-8675309"
BIRTH_DATE = "19610704"
INSTITUTION = "Saint Elsewhere General Hospital"
PRIVATE_TEXT = "PRIVATE-VENDOR-SECRET-4711"
REFERRING = "House^Gregory"


def chest_like(height: int = 256, width: int = 256, seed: int = 0) -> np.ndarray:
    """A smooth, radiograph-like image in [0, 1]: two dark 'lungs' in a bright body, noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / np.array([height, width])[:, None, None]
    body = 0.75 - 0.3 * ((x - 0.5) ** 2 + (y - 0.5) ** 2)
    for centre in (0.3, 0.7):
        body -= 0.35 * np.exp(-(((x - centre) / 0.13) ** 2 + ((y - 0.45) / 0.25) ** 2))
    return np.clip(body + rng.normal(0, 0.03, body.shape), 0, 1).astype(np.float32)


def png_bytes(pixels: np.ndarray, mode: str = "L") -> bytes:
    buffer = io.BytesIO()
    if mode == "L":
        Image.fromarray((pixels * 255).astype(np.uint8)).save(buffer, format="PNG")
    elif mode == "I;16":
        Image.fromarray((pixels * 65535).astype(np.uint16)).save(buffer, format="PNG")
    else:
        Image.fromarray((pixels * 255).astype(np.uint8)).convert(mode).save(buffer, format="PNG")
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims a size in its header but holds no image data (a decompression bomb's
    first bytes)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body))
            + kind
            + body
            + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def make_dicom(
    *,
    pixels: np.ndarray | None = None,
    bits: int = 16,
    photometric: str = "MONOCHROME2",
    modality: str = "DX",
    view: str = "PA",
    frames: int = 1,
    patient_id: str = PATIENT_ID,
    study_date: str = "20240115",
    with_pixels: bool = True,
    window: tuple[float, float] | None = None,
    rescale: tuple[float, float] | None = None,
    burned_in: bool = False,
    study_uid: str | None = None,
) -> bytes:
    """A DICOM file carrying known identifying strings, private tags and the given pixels."""
    image = chest_like() if pixels is None else pixels
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.preamble = b"\x00" * 128
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName = PATIENT_NAME
    ds.PatientID = patient_id
    ds.PatientBirthDate = BIRTH_DATE
    ds.InstitutionName = INSTITUTION
    ds.ReferringPhysicianName = REFERRING
    ds.StudyDate = study_date
    ds.AcquisitionDate = study_date
    ds.Modality = modality
    ds.ViewPosition = view
    ds.BurnedInAnnotation = "YES" if burned_in else "NO"
    ds.PixelSpacing = [0.2, 0.2]
    block = ds.private_block(0x0011, "ACME Imaging", create=True)
    block.add_new(0x01, "LO", PRIVATE_TEXT)
    if with_pixels:
        _add_pixels(ds, image, bits=bits, photometric=photometric, frames=frames)
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _add_pixels(
    ds: Dataset, image: np.ndarray, *, bits: int, photometric: str, frames: int
) -> None:
    height, width = image.shape
    maximum = 2**bits - 1
    values = image if photometric != "MONOCHROME1" else 1.0 - image
    stored = np.round(values * maximum)
    ds.Rows, ds.Columns = height, width
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits - 1, 0
    ds.BitsAllocated = 8 if bits <= 8 else 16
    dtype = np.uint8 if bits <= 8 else np.uint16
    if photometric == "RGB":
        stored = np.stack([stored] * 3, axis=-1)
        ds.SamplesPerPixel, ds.PlanarConfiguration = 3, 0
    else:
        ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    if frames > 1:
        ds.NumberOfFrames = frames
        stored = np.stack([stored] * frames)
    ds.PixelData = stored.astype(dtype).tobytes()


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
