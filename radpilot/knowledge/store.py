"""The one Chroma database: embedded under the state dir, or a Chroma server.

Embedded (`<state_dir>/knowledge/chroma`) is the default. With `RADPILOT_CHROMA_URL` set, an
HTTP client to a `chroma run` server, which several API replicas can share. Either way the
embeddings are computed in this process by the collection's embedding function (radpilot's
registered MiniLM): the server stores and searches vectors, it never embeds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from radpilot.core.errors import RadpilotError
from radpilot.shared import process_wide

CHROMA_DEFAULT_PORT = 8000  # what `chroma run` listens on without --port


class VectorStoreError(RadpilotError):
    code = "vector_store_unavailable"


def chroma_client(state_dir: Path, url: str | None = None) -> Any:
    """The Chroma client for these settings; one per location and process."""
    return http_client(url) if url else persistent_client(state_dir)


@process_wide
def persistent_client(state_dir: Path) -> Any:
    import chromadb

    return chromadb.PersistentClient(
        path=str(state_dir / "knowledge" / "chroma"),
        settings=chromadb.Settings(anonymized_telemetry=False),  # no network calls
    )


@process_wide
def http_client(url: str) -> Any:
    """A client of the Chroma server at `url`, checked with a heartbeat so that a wrong URL
    fails here, with the URL in the message, not at the first search."""
    import chromadb

    host, port, ssl = _server_address(url)
    try:
        client = chromadb.HttpClient(
            host=host,
            port=port,
            ssl=ssl,
            settings=chromadb.Settings(anonymized_telemetry=False),  # no network calls
        )
        client.heartbeat()
    except Exception as error:  # chromadb wraps transport errors in several types
        raise VectorStoreError(
            f"cannot reach the Chroma server at {host}:{port} ({' '.join(str(error).split())}). "
            f"Start one with `chroma run --host {host} --port {port} --path DIR`, or unset "
            "RADPILOT_CHROMA_URL to use the embedded store under the state dir"
        ) from None
    return client


def _server_address(url: str) -> tuple[str, int, bool]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise VectorStoreError(f"RADPILOT_CHROMA_URL must look like http://HOST:PORT, not {url!r}")
    ssl = parts.scheme == "https"
    try:
        port = parts.port or (443 if ssl else CHROMA_DEFAULT_PORT)
    except ValueError:
        raise VectorStoreError(f"RADPILOT_CHROMA_URL has an invalid port: {url!r}") from None
    return parts.hostname, port, ssl
