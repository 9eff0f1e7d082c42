"""The one Chroma database of a state dir (`<state_dir>/knowledge/chroma`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from radpilot.shared import process_wide


@process_wide
def chroma_client(state_dir: Path) -> Any:
    import chromadb

    return chromadb.PersistentClient(
        path=str(state_dir / "knowledge" / "chroma"),
        settings=chromadb.Settings(anonymized_telemetry=False),  # no network calls
    )
