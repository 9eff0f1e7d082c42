"""One access policy for every door: the REST API, the Gradio UI and MCP over HTTP.

A caller is the name of an API key from the key store (`radpilot keys create NAME`); with no
key configured, every caller is the local user and the listeners refuse any address but
loopback (`cli_server.refuse_open_network`). Each key has its own rate limit. A session, and
everything in it (studies, artefacts, exports), belongs to the key that created it; any other
key gets the same "unknown" refusal as for an id that does not exist.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from typing import Any

from radpilot.app.keys import KeyStore
from radpilot.app.ownership import LOCAL_OWNER, Ownership, open_ownership
from radpilot.core.errors import RadpilotError
from radpilot.settings import Settings

DEFAULT_REQUESTS_PER_MINUTE = 600


class AccessDeniedError(RadpilotError):
    pass


class RateLimiter:
    """At most `per_minute` requests per key in any sliding minute."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._seen: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def allow(self, key: str) -> bool:
        now = time.monotonic()
        with self._lock:
            seen = self._seen[key]
            while seen and now - seen[0] > 60:
                seen.popleft()
            if len(seen) >= self.per_minute:
                return False
            seen.append(now)
            return True


class AccessPolicy:
    def __init__(self, keys: KeyStore, owners: Ownership, limiter: RateLimiter) -> None:
        self.keys, self.owners, self.limiter = keys, owners, limiter

    def caller(self, token: str | None) -> str:
        """The key's name for a bearer token (or `Bearer <token>` header value); refuses a
        missing or unknown key, and a key over its rate limit."""
        if not self.keys.names():
            return LOCAL_OWNER
        token = (token or "").strip().removeprefix("Bearer ").strip()
        name = self.keys.identify(token) if token else None
        if name is None:
            raise AccessDeniedError("a valid API key is required: Authorization: Bearer <key>",
                                    code="unauthorized")  # fmt: skip
        if not self.limiter.allow(name):
            raise AccessDeniedError("rate limit exceeded; slow down", code="rate_limited")
        return name

    def new_session(self, owner: str, session_id: str) -> str:
        self.owners.add_session(session_id, owner)
        return session_id

    def session(self, owner: str, session_id: str) -> str:
        """`session_id` if `owner` created it; otherwise "unknown session", as for no session."""
        if not self.owners.owns_session(owner, session_id):
            raise AccessDeniedError(f"unknown session {session_id!r}", code="unknown_session")
        return session_id

    def record_artefacts(self, session_id: str, event: Any) -> None:
        """Register the artefacts a turn's `tool_end` event created as the session's, so that
        they are served to its owner only (and forgotten with the session)."""
        data = event.data
        if event.kind == "tool_end" and data.get("ok") and not data.get("reused"):
            artefacts = data["evidence"].get("artefacts", [])
            self.owners.add_artefacts(session_id, [a["id"] for a in artefacts])

    def artefact(self, owner: str, artefact_id: str) -> str:
        """`artefact_id` if it belongs to one of `owner`'s sessions; otherwise "unknown"."""
        session_id = self.owners.session_of_artefact(artefact_id)
        if session_id is None or not self.owners.owns_session(owner, session_id):
            raise AccessDeniedError(f"unknown artefact {artefact_id!r}", code="unknown_artefact")
        return artefact_id


def open_access(
    settings: Settings, requests_per_minute: int = DEFAULT_REQUESTS_PER_MINUTE
) -> AccessPolicy:
    """The policy over the settings' key store and ownership store (SQLite in the state dir,
    or PostgreSQL with the sessions)."""
    return AccessPolicy(KeyStore(settings.state_dir), open_ownership(settings),
                        RateLimiter(requests_per_minute))  # fmt: skip
