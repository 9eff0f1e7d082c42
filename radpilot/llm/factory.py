"""The one place a chat client is built from the settings (endpoint, model, key, timeouts,
retries), for the LLM planner, the drafter and the vision-language model alike."""

from __future__ import annotations

from radpilot.core.errors import RadpilotError
from radpilot.llm.client import ChatClient
from radpilot.settings import Settings


def chat_client(url: str, model: str | None, settings: Settings, what: str) -> ChatClient:
    """A client for an OpenAI-compatible endpoint configured in the settings."""
    if not model:
        raise RadpilotError(
            f"the {what} endpoint {url} is set but no model name is: set "
            f"RADPILOT_{what.upper()}_MODEL to the name the server serves",
            code="bad_settings",
        )
    key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else None
    return ChatClient(
        url,
        model,
        api_key=key,
        timeout_s=settings.llm_timeout_s,
        retries=settings.llm_retries,
        stream=settings.llm_stream,
        frequency_penalty=settings.llm_frequency_penalty,
    )
