"""Storage of tool artefacts (overlay PNGs, masks) under unguessable ids."""

from __future__ import annotations

import io
import secrets
from pathlib import Path
from typing import Any, Literal

from radpilot.core.contracts import Artefact
from radpilot.core.errors import RadpilotError
from radpilot.tools.studies import is_store_id, write_atomically

# zlib level 3: Pillow's `optimize=True` took 850 ms to encode a 1024 px overlay on 2 cores (the
# largest part of a localization) to save a fifth of the bytes; level 3 takes about 30 ms.
PNG_COMPRESS_LEVEL = 3


def png_bytes(image: Any) -> bytes:
    """A Pillow image encoded as PNG, quickly (artefacts are written on every turn)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def png_name(artefact_id: str) -> str:
    """The file a PNG artefact is stored in, relative to the store."""
    return f"{artefact_id}.png"


class ArtefactStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def save_png(self, data: bytes, kind: Literal["overlay", "mask", "plot", "other"]) -> Artefact:
        artefact_id = "ar_" + secrets.token_urlsafe(16)
        relative = png_name(artefact_id)
        write_atomically(self.root / relative, data)
        return Artefact(id=artefact_id, kind=kind, media_type="image/png", path=relative)

    def path(self, artefact: Artefact) -> Path:
        path = (self.root / artefact.path).resolve()
        if not path.is_relative_to(self.root.resolve()) or not path.exists():
            raise RadpilotError(f"unknown artefact {artefact.id!r}", code="unknown_artefact")
        return path

    def delete(self, artefact_id: str) -> None:
        """Remove an artefact's file. One already gone is fine (a retried deletion finishes);
        a malformed id is refused, so no id can name a file outside the store."""
        if not is_store_id(artefact_id):
            raise RadpilotError(f"unknown artefact {artefact_id!r}", code="unknown_artefact")
        (self.root / png_name(artefact_id)).unlink(missing_ok=True)
