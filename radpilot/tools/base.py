"""The tool protocol: what every expert tool is and what it may use (the contract types it
returns, Evidence and ToolResult among them, are `radpilot.core.contracts`).

A tool is a small class with a name, a description written for a planner, a pydantic `Input`
and `Output`, and the model cards of any weights it uses. The registry validates arguments,
times the call and wraps the output into a `ToolResult`; the agent turns results into
`Evidence` with stable ids. Tools know nothing about conversations or HTTP.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from radpilot.core.contracts import Artefact, EvidenceKind, ModelCard, ModelIdentity

if TYPE_CHECKING:
    from radpilot.settings import Settings
    from radpilot.tools.artefacts import ArtefactStore
    from radpilot.tools.models.hub import ModelHub
    from radpilot.tools.studies import StudyStore

class ToolInput(BaseModel):
    """Base of every tool's Input: unknown arguments are an error, never silently ignored."""

    model_config = ConfigDict(extra="forbid")


class ToolOutput(BaseModel):
    """Base of every tool's Output."""

    limitations: list[str] = Field(
        default_factory=list, description="What the user must know to read this output safely."
    )
    artefacts: list[Artefact] = Field(default_factory=list)
    models: list[ModelIdentity] = Field(default_factory=list)


@dataclass(frozen=True)
class ToolContext:
    """What a tool may use besides its arguments: configuration, the stored studies, where to
    put artefacts, and the models (loaded once per process)."""

    settings: Settings
    studies: StudyStore
    artefacts: ArtefactStore
    models: ModelHub

    @classmethod
    def create(cls, settings: Settings, root: Path | None = None) -> ToolContext:
        """Stores under `root` (default: the state dir); models from the settings' weights dir."""
        from radpilot.tools.artefacts import ArtefactStore
        from radpilot.tools.dicom import load_or_create_secret
        from radpilot.tools.models.hub import ModelHub
        from radpilot.tools.models.store import ModelStore
        from radpilot.tools.studies import StudyStore

        base = root if root is not None else settings.state_dir
        return cls(
            settings=settings,
            studies=StudyStore(
                base / "studies",
                secret=load_or_create_secret(settings.state_dir),
                max_megapixels=settings.max_image_megapixels,
            ),
            artefacts=ArtefactStore(base / "artefacts"),
            models=ModelHub(ModelStore(settings.weights_dir), device=settings.device,
                            batch_wait_s=settings.batch_wait_ms / 1000),  # fmt: skip
        )


InputT = TypeVar("InputT", bound=ToolInput)
OutputT = TypeVar("OutputT", bound=ToolOutput)


class Tool(ABC, Generic[InputT, OutputT]):
    """An expert capability the planner can call.

    Subclasses set the class attributes and implement `run`. Heavy libraries are imported
    inside `run` (or the model loader), never at module import, so listing tools stays fast.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    Input: ClassVar[type[ToolInput]]
    Output: ClassVar[type[ToolOutput]]
    evidence_kind: ClassVar[EvidenceKind] = "model_output"
    # Imaging tools that need the pixels (and the GPUs) run on the tool service when one is
    # configured (`RADPILOT_TOOLS_URL`); the others always run in the API process.
    on_tool_service: ClassVar[bool] = False
    model_cards: ClassVar[tuple[ModelCard, ...]] = ()

    def cards(self) -> list[ModelCard]:
        """Model cards of the weights this tool uses by default."""
        return list(self.model_cards)

    @abstractmethod
    def run(self, inp: InputT, ctx: ToolContext) -> OutputT:
        """Compute the output; raise `RadpilotError` for problems the user can fix."""
