"""The weight store: where weights live, whether they are there and intact, and how they get
there (import from a folder an air-gapped site brought, or an explicit pull).

Layout under the model dir is what the real loaders expect, e.g. `xrv/` is passed to
torchxrayvision as `cache_dir`. Nothing here downloads unless `pull` is called.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from radpilot.core.contracts import ModelCard
from radpilot.core.errors import RadpilotError
from radpilot.tools.models.catalog import CATALOG, KnownWeights

State = Literal["verified", "installed", "missing", "corrupt"]
BUNDLED_DIR = "radpilot.tools.models.starter"


class WeightsMissingError(RadpilotError):
    code = "weights_missing"


class WeightStatus(BaseModel):
    name: str
    state: State
    path: str
    sha256: str | None = None
    detail: str = ""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def bundled_dir(name: str) -> Path:
    return Path(str(resources.files(BUNDLED_DIR))) / name


def starter_bundle(name: str, folder: Path | None, what: str, trains: str
                   ) -> tuple[dict[str, Any], dict[str, Any]]:  # fmt: skip
    """A starter bundle's metadata and its weights as fp32 tensors (fp16 on disk), or a clear
    error naming the command that trains it."""
    from safetensors.torch import load_file

    folder = folder or bundled_dir(name)
    weights = folder / "model.safetensors"
    if not weights.exists() or not (folder / "metadata.json").exists():
        raise WeightsMissingError(f"{what} is not in {folder}; train it with `{trains}`")
    state = {k: v.float() if v.is_floating_point() else v
             for k, v in load_file(str(weights)).items()}  # fmt: skip
    return json.loads((folder / "metadata.json").read_text()), state


@cache
def bundled_card(name: str) -> ModelCard:
    """The model card shipped in a bundled model's `metadata.json` (read once per process:
    every tool listing asks for it)."""
    metadata = json.loads((bundled_dir(name) / "metadata.json").read_text())
    return ModelCard.model_validate(metadata["card"])


class ModelStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def _manifest_path(self) -> Path:
        return self.root / "manifest.json"

    def _manifest(self) -> dict[str, str]:
        if not self._manifest_path.exists():
            return {}
        data: dict[str, str] = json.loads(self._manifest_path.read_text())
        return data

    def _record(self, name: str, sha256: str) -> None:
        manifest = self._manifest()
        manifest[name] = sha256
        self.root.mkdir(parents=True, exist_ok=True)
        self._manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")

    def folder(self, weights: KnownWeights) -> Path:
        if weights.bundled:
            return bundled_dir(weights.name)
        return self.root / weights.folder

    def path_of(self, name: str) -> Path:
        weights = known(name)
        return self.folder(weights) / weights.filename

    def expected_sha256(self, weights: KnownWeights) -> str | None:
        if weights.bundled:
            metadata = bundled_dir(weights.name) / "metadata.json"
            if metadata.exists():
                pinned: str = json.loads(metadata.read_text())["sha256"]
                return pinned
        return weights.sha256 or self._manifest().get(weights.name)

    def status(self, name: str, *, verify: bool = False) -> WeightStatus:
        weights = known(name)
        path = self.path_of(name)
        if not path.exists():
            return WeightStatus(name=name, state="missing", path=str(path))
        if not verify:
            return WeightStatus(name=name, state="installed", path=str(path))
        actual = sha256_of(path)
        state, detail = self._judge(weights, actual)
        return WeightStatus(name=name, state=state, path=str(path), sha256=actual, detail=detail)

    def _judge(self, weights: KnownWeights, actual: str) -> tuple[State, str]:
        expected = self.expected_sha256(weights)
        if expected is not None:
            if actual == expected:
                return "verified", "sha256 matches the pinned hash"
            return "corrupt", f"sha256 differs from the pinned {expected[:12]}..."
        if weights.sha256_prefix is not None:
            if actual.startswith(weights.sha256_prefix):
                return "verified", "sha256 matches the file name's prefix"
            return "corrupt", f"sha256 does not start with {weights.sha256_prefix}"
        return "installed", "no published hash; import records one"

    def statuses(self, *, verify: bool = False) -> list[WeightStatus]:
        return [self.status(name, verify=verify) for name in CATALOG]

    def require(self, name: str) -> Path:
        """The path of installed weights, or a clear error that says how to get them."""
        path = self.path_of(name)
        if not path.exists():
            weights = known(name)
            raise WeightsMissingError(
                f"weights {name} are not installed (expected {path}). Either copy "
                f"{weights.filename} (from {weights.url}) into a folder and run "
                f"`radpilot models import --from FOLDER`, or, with network access, run "
                f"`radpilot models pull {name}`"
            )
        return path

    def import_from(self, source: Path) -> list[WeightStatus]:
        """Copy every known weight file found under `source` into place and check it."""
        if not source.is_dir():
            raise RadpilotError(f"{source} is not a folder")
        found = {path.name: path for path in source.rglob("*") if path.is_file()}
        imported = []
        for weights in CATALOG.values():
            if weights.bundled or weights.filename not in found:
                continue
            target = self.folder(weights) / weights.filename
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(target.name + ".partial")
            shutil.copyfile(found[weights.filename], partial)
            actual = sha256_of(partial)
            state, detail = self._judge(weights, actual)
            if state == "corrupt":
                partial.unlink()
                imported.append(
                    WeightStatus(
                        name=weights.name,
                        state="corrupt",
                        path=str(found[weights.filename]),
                        sha256=actual,
                        detail=detail + "; not installed",
                    )
                )
                continue
            partial.replace(target)
            if self.expected_sha256(weights) is None:
                self._record(weights.name, actual)
            # The copy was hashed above; judging that hash again avoids re-reading a
            # multi-GB checkpoint.
            state, detail = self._judge(weights, actual)
            imported.append(WeightStatus(name=weights.name, state=state, path=str(target),
                                         sha256=actual, detail=detail))  # fmt: skip
        if not imported:
            raise RadpilotError(
                f"no known weight file under {source}; expected names such as "
                + ", ".join(sorted({w.filename for w in CATALOG.values() if not w.bundled})[:4])
            )
        return imported

    def pull(self, name: str) -> WeightStatus:
        """Download weights (the only code path that touches the network)."""
        import tempfile

        import httpx

        weights = known(name)
        if weights.bundled:
            return self.status(name, verify=True)
        with tempfile.TemporaryDirectory() as scratch:
            partial = Path(scratch) / weights.filename
            try:
                with httpx.stream("GET", weights.url, follow_redirects=True, timeout=60) as reply:
                    reply.raise_for_status()
                    with partial.open("wb") as handle:
                        for chunk in reply.iter_bytes():
                            handle.write(chunk)
            except httpx.HTTPError as error:
                raise RadpilotError(
                    f"cannot download {name} from {weights.url}: {error}. On an air-gapped "
                    f"site, bring {weights.filename} by hand and run `radpilot models import "
                    "--from FOLDER`"
                ) from None
            statuses = self.import_from(Path(scratch))
        return statuses[0]


def known(name: str) -> KnownWeights:
    try:
        return CATALOG[name]
    except KeyError:
        raise RadpilotError(
            f"unknown weights {name!r}; known: {', '.join(CATALOG)}", code="unknown_weights"
        ) from None
