"""The composition root: settings → stores → model hub → tool registry (local, or on a tool
service; with or without the vision-language model) → planners → agent, built in one place.

Every interface takes its tools and its agent from here (the REST API and `/v1/tools`, the
UI, the CLI's `tools list` / `tools run` / `ask` / `eval`, the MCP server and the Ray tool
service), so what one interface lists is what every interface runs. Lower layers never
import this module; it imports them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from radpilot.settings import Settings
from radpilot.tools.registry import ToolRegistry

if TYPE_CHECKING:
    from radpilot.agent.planner import Planner
    from radpilot.agent.service import Agent
    from radpilot.tools.base import Tool


def build_registry(settings: Settings, *, local: bool = False) -> ToolRegistry:
    """Every tool that ships with radpilot, plus `describe_image` when a vision-language model
    is configured (`RADPILOT_VLM_URL`); without one the planners are not offered it.

    With a tool service configured (`RADPILOT_TOOLS_URL`) the imaging tools run there, unless
    `local`: the tool service itself, and one-off runs whose scratch studies the service
    cannot see, run every tool in this process."""
    from radpilot.knowledge.tools import KnowledgeGraphTool, SearchGuidelinesTool, SimilarCasesTool
    from radpilot.tools.classify import ClassifyFindingsTool
    from radpilot.tools.compare import CompareStudiesTool
    from radpilot.tools.image_info import ImageInfoTool
    from radpilot.tools.localize import LocalizeFindingTool
    from radpilot.tools.measure import MeasureTool
    from radpilot.tools.segment import SegmentAnatomyTool, SegmentRegionTool

    tools: list[Tool[Any, Any]] = [
        ImageInfoTool(),
        ClassifyFindingsTool(),
        LocalizeFindingTool(),
        SegmentAnatomyTool(),
        SegmentRegionTool(),
        MeasureTool(),
        CompareStudiesTool(),
        SearchGuidelinesTool(),
        KnowledgeGraphTool(),
        SimilarCasesTool(),
    ]
    if settings.tools_url is not None and not local:
        from radpilot.tools.remote import RemoteToolRegistry

        registry: ToolRegistry = RemoteToolRegistry(tools, settings.tools_url)
    else:
        registry = ToolRegistry(tools)
    if settings.vlm_url is not None:
        from radpilot.llm.factory import chat_client
        from radpilot.tools.describe import DescribeImageTool

        registry.register(
            DescribeImageTool(chat_client(settings.vlm_url, settings.vlm_model, settings, "vlm"))
        )
    return registry


def build_agent(
    settings: Settings,
    *,
    registry: ToolRegistry | None = None,
    planner: Planner | None = None,
) -> Agent:
    """The agent over the tools `build_registry` gives for these settings (or the `registry`
    an interface already built from them, so that it lists the very tools the agent runs),
    with the stores, the model hub, the planner (LLM when configured, else embedded), the
    composer, the verifier and the drafter."""
    from radpilot.agent.composer import Composer
    from radpilot.agent.graph import TurnContext
    from radpilot.agent.history import open_history
    from radpilot.agent.llm.drafter import drafter_for
    from radpilot.agent.llm.planner import planner_for
    from radpilot.agent.memory import open_checkpointer
    from radpilot.agent.service import Agent
    from radpilot.agent.understanding import IntentRecognizer
    from radpilot.agent.verifier import Verifier
    from radpilot.knowledge.embedding import SentenceEmbedder
    from radpilot.tools.base import ToolContext

    # First: an unreachable checkpoint database fails in seconds, before the models load.
    checkpointer = open_checkpointer(settings)
    registry = registry or build_registry(settings)
    recognizer = IntentRecognizer(SentenceEmbedder(settings.weights_dir))
    verifier = Verifier(recognizer.vocabulary)
    context = TurnContext(
        registry=registry,
        tools=ToolContext.create(settings),
        history=open_history(checkpointer),
        recognizer=recognizer,
        planner=planner or planner_for(settings, registry),
        composer=Composer(),
        verifier=verifier,
        drafter=drafter_for(settings, verifier),
    )
    return Agent(settings, checkpointer=checkpointer, context=context)
