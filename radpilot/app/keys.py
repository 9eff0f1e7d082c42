"""API keys: created once, shown once, stored only as SHA-256 hashes.

Keys are 32 random bytes, so a plain SHA-256 is a safe verifier (no dictionary to attack);
comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path

from pydantic import BaseModel

from radpilot.core.errors import RadpilotError

PREFIX = "rp_"


class StoredKey(BaseModel):
    name: str
    sha256: str


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class KeyStore:
    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "keys" / "api_keys.json"

    def _load(self) -> list[StoredKey]:
        if not self.path.exists():
            return []
        return [StoredKey.model_validate(item) for item in json.loads(self.path.read_text())]

    def _save(self, keys: list[StoredKey]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            json.dump([k.model_dump() for k in keys], handle, indent=2)
        temporary.replace(self.path)

    def names(self) -> list[str]:
        return [key.name for key in self._load()]

    def create(self, name: str) -> str:
        """A new key's token (the only time it is ever shown)."""
        keys = self._load()
        if not name or any(key.name == name for key in keys):
            raise RadpilotError(f"a key named {name!r} exists already (or the name is empty)")
        token = PREFIX + secrets.token_urlsafe(32)
        self._save([*keys, StoredKey(name=name, sha256=_digest(token))])
        return token

    def revoke(self, name: str) -> None:
        keys = self._load()
        if not any(key.name == name for key in keys):
            raise RadpilotError(f"no key named {name!r}")
        self._save([key for key in keys if key.name != name])

    def identify(self, token: str) -> str | None:
        """The key's name, or None; compares against every stored hash in constant time."""
        digest = _digest(token)
        found = None
        for key in self._load():
            if hmac.compare_digest(digest, key.sha256):
                found = key.name
        return found
