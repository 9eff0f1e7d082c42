"""What every starter bundle shipped in the package must satisfy, for the tests of each."""

from __future__ import annotations

from pathlib import Path

from radpilot.core.contracts import ModelCard


def shipped_bundle(name: str) -> tuple[Path, ModelCard]:
    """The bundle's weights file and model card, after checking that the weights are small
    enough to ship (< 10 MB) and verify against their recorded sha256, which the card names."""
    from radpilot.tools.models.store import ModelStore, bundled_card, sha256_of

    store = ModelStore(Path("unused"))
    path = store.path_of(name)
    assert path.stat().st_size < 10_000_000
    assert store.status(name, verify=True).state == "verified"
    card = bundled_card(name)
    assert card.sha256 == sha256_of(path)
    return path, card
