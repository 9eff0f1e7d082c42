"""The one configuration object of radpilot (environment prefix ``RADPILOT_``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# The project root of a source checkout: radpilot/settings.py -> radpilot/ -> root.
_PROJECT_ROOT = Path(__file__).resolve().parent.parent


def default_data_dir() -> Path | None:
    """The development data (`../shared/data/cxr` from the project root) when it is present."""
    for root in (Path.cwd(), _PROJECT_ROOT):
        candidate = (root / ".." / "shared" / "data" / "cxr").resolve()
        if candidate.is_dir():
            return candidate
    return None


def default_state_dir() -> Path:
    from platformdirs import user_data_dir

    return Path(user_data_dir("radpilot", appauthor=False))


class Settings(BaseSettings):
    """Settings read from the environment (and an optional `.env` file).

    Unset `llm_url` means the embedded, offline planner is used.
    """

    model_config = SettingsConfigDict(env_prefix="RADPILOT_", env_file=".env", extra="ignore")

    data: Path | None = Field(
        default_factory=default_data_dir,
        description="Development data (NIH/COVID images, labels); used by tests, training, evals.",
    )
    state_dir: Path = Field(
        default_factory=default_state_dir,
        description="Where sessions (SQLite, unless checkpoint_url), the vector store (unless "
        "chroma_url), uploads and keys are kept.",
    )
    model_dir: Path | None = Field(
        default=None, description="Weights cache; defaults to <state_dir>/models."
    )
    knowledge_dir: Path | None = Field(
        default=None,
        description="A site's own guideline notes (same format as the packaged corpus), "
        "indexed with it; a note with instruction-like text is refused.",
    )
    device: Literal["cpu", "cuda"] = "cpu"
    batch_wait_ms: float = Field(
        default=5.0, ge=0, le=100,
        description="How long a classifier or box-detector request waits for other sessions' "
        "requests to share its forward pass (cross-session micro-batching), only while another "
        "is in flight; 0 turns batching off.",
    )
    llm_url: str | None = Field(default=None, description="OpenAI-compatible endpoint (vLLM).")
    llm_model: str | None = Field(default=None, description="The served model's name.")
    llm_api_key: SecretStr | None = Field(default=None, description="Bearer token, if any.")
    llm_timeout_s: float = Field(default=30.0, gt=0, description="Per request.")
    llm_retries: int = Field(default=1, ge=0, le=5, description="Retries with backoff.")
    llm_stream: bool = Field(default=True, description="Stream replies (server-sent events).")
    llm_frequency_penalty: float = Field(
        default=0.5,
        ge=0,
        le=2,
        description="Sent with each request: vLLM does not bound whitespace runs inside "
        "grammar-constrained tool calls, and a model stuck on whitespace never closes its call.",
    )
    llm_draft: bool = Field(
        default=False, description="Let the LLM reword the answer (verified claim by claim)."
    )
    vlm_url: str | None = Field(
        default=None, description="OpenAI-compatible endpoint of a vision-language model."
    )
    vlm_model: str | None = None
    tools_url: str | None = Field(
        default=None,
        description="A tool service (e.g. Ray Serve) that runs the imaging tools; it mounts "
        "the same state dir. Unset: every tool runs in this process.",
    )
    import_dir: Path | None = Field(
        default=None,
        description="The only folder whose files MCP's `add_study` may read by `path`; unset: "
        "paths are refused over HTTP (a local stdio client may name any file it can read).",
    )
    upload_limit_mb: float = Field(
        default=50.0, gt=0, description="Largest study accepted (REST upload, MCP base64)."
    )
    max_image_megapixels: float = Field(
        default=50.0, gt=0, description="Images above this size are refused before decoding."
    )
    dicomweb_url: str | None = Field(
        default=None,
        description="A PACS's DICOMweb root (QIDO-RS, WADO-RS, STOW-RS), e.g. "
        "http://orthanc:8042/dicom-web; unset: PACS search and pull are off.",
    )
    dicomweb_username: str | None = Field(default=None, description="HTTP basic auth user.")
    dicomweb_password: SecretStr | None = Field(default=None, description="HTTP basic password.")
    dicomweb_token: SecretStr | None = Field(
        default=None, description="Bearer token (instead of basic auth)."
    )
    dicomweb_timeout_s: float = Field(default=20.0, gt=0, le=600, description="Per request.")
    pacs_write_back: bool = Field(
        default=False,
        description="Allow answers to be written back to the PACS (DICOM SR and Secondary "
        "Captures), each time on request; pulls then keep the original UIDs (owner-only, "
        "deleted with the session).",
    )
    checkpoint_url: str | None = Field(
        default=None,
        description="PostgreSQL URL for conversation state (postgresql://USER@HOST:PORT/DB), "
        "shared by API replicas; unset keeps sessions in SQLite under the state dir.",
    )
    chroma_url: str | None = Field(
        default=None,
        description="Chroma server for the vector store (http://HOST:PORT); unset uses the "
        "embedded store under the state dir.",
    )

    @field_validator(
        "llm_url",
        "llm_model",
        "vlm_url",
        "vlm_model",
        "checkpoint_url",
        "chroma_url",
        "tools_url",
        "dicomweb_url",
        "dicomweb_username",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @property
    def weights_dir(self) -> Path:
        return self.model_dir if self.model_dir is not None else self.state_dir / "models"

    @property
    def uses_llm_planner(self) -> bool:
        return self.llm_url is not None

    @property
    def uses_vlm(self) -> bool:
        return self.vlm_url is not None
