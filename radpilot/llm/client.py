"""A small OpenAI-compatible chat-completions client (vLLM's `/v1/chat/completions`) on httpx.

It sends tool schemas, reads tool calls from a plain or a streamed (server-sent events) reply,
retries transient failures (timeouts, connection errors, 429 and 5xx) with exponential backoff,
and raises `LLMUnavailableError` with a readable reason when the server cannot answer.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

import httpx
from pydantic import BaseModel, Field

from radpilot.core.errors import RadpilotError

log = logging.getLogger(__name__)


class LLMUnavailableError(RadpilotError):
    code = "llm_unavailable"


class RawToolCall(BaseModel):
    """A tool call as the model wrote it: the arguments are still unparsed JSON text."""

    id: str = ""
    name: str = ""
    arguments: str = ""


class ChatReply(BaseModel):
    content: str = ""
    tool_calls: list[RawToolCall] = Field(default_factory=list)
    finish_reason: str | None = None
    streamed: bool = False
    elapsed_ms: float = 0.0


class ChatRequest(BaseModel):
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] = Field(default_factory=list)
    tool_choice: str | dict[str, Any] | None = None
    max_tokens: int = 600
    temperature: float = 0.0


class ChatModel(Protocol):
    """What the planners need from a chat model; tests provide scripted ones."""

    model: str

    def complete(self, request: ChatRequest) -> ChatReply: ...


_RETRYABLE_STATUS = {408, 429, 500, 502, 503, 504}


class ChatClient:
    """Chat completions over HTTP, streamed or not, with retries and backoff."""

    def __init__(
        self,
        url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 30.0,
        retries: int = 2,
        backoff_s: float = 0.5,
        stream: bool = True,
        frequency_penalty: float = 0.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.model = model
        self.stream = stream
        self.frequency_penalty = frequency_penalty
        self.retries = retries
        self.backoff_s = backoff_s
        self._sleep = sleep
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(
            base_url=endpoint_root(url), timeout=timeout_s, headers=headers, transport=transport
        )

    def close(self) -> None:
        self._http.close()

    def complete(self, request: ChatRequest) -> ChatReply:
        body: dict[str, Any] = {
            "model": self.model,
            "stream": self.stream,
            **request.model_dump(exclude_none=True),
        }
        if request.tools:
            body["parallel_tool_calls"] = False  # one call per step keeps repair simple
        if self.frequency_penalty:
            body["frequency_penalty"] = self.frequency_penalty
        last_error = ""
        for attempt in range(self.retries + 1):
            if attempt:
                self._sleep(self.backoff_s * 2 ** (attempt - 1))
            started = time.perf_counter()
            try:
                reply = self._post(body)
            except _Retryable as error:
                last_error = str(error)
                log.warning("LLM request failed (attempt %d): %s", attempt + 1, last_error)
                continue
            reply.elapsed_ms = (time.perf_counter() - started) * 1000.0
            return reply
        raise LLMUnavailableError(
            f"the LLM at {self._http.base_url} did not answer after {self.retries + 1} "
            f"attempt(s): {last_error}"
        )

    def _post(self, body: dict[str, Any]) -> ChatReply:
        try:
            if body["stream"]:
                with self._http.stream("POST", "chat/completions", json=body) as response:
                    _raise_for_status(response, lambda: response.read().decode(errors="replace"))
                    return assemble_stream(response.iter_lines())
            response = self._http.post("chat/completions", json=body)
            _raise_for_status(response, lambda: response.text)
            return parse_reply(response.json())
        except (httpx.TimeoutException, httpx.TransportError) as error:
            raise _Retryable(f"{type(error).__name__}: {error}") from None
        except (ValueError, KeyError, IndexError, TypeError) as error:
            raise LLMUnavailableError(f"the LLM's reply could not be read: {error}") from None


class _Retryable(Exception):
    pass


def endpoint_root(url: str) -> str:
    """`http://host:8000`, `.../v1` or `.../v1/` all mean the same OpenAI-compatible root."""
    root = url.rstrip("/")
    return (root if root.endswith("/v1") else root + "/v1") + "/"


def _raise_for_status(response: httpx.Response, body: Callable[[], str]) -> None:
    if response.status_code < 400:
        return
    detail = body()[:300]
    if response.status_code in _RETRYABLE_STATUS:
        raise _Retryable(f"HTTP {response.status_code}: {detail}")
    raise LLMUnavailableError(
        f"the LLM refused the request (HTTP {response.status_code}): {detail}"
    )


def parse_reply(payload: dict[str, Any]) -> ChatReply:
    choice = payload["choices"][0]
    message = choice.get("message") or {}
    calls = [
        RawToolCall(
            id=call.get("id") or "",
            name=call["function"]["name"] or "",
            arguments=call["function"].get("arguments") or "",
        )
        for call in message.get("tool_calls") or []
    ]
    return ChatReply(
        content=message.get("content") or "",
        tool_calls=calls,
        finish_reason=choice.get("finish_reason"),
    )


def stream_events(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """The JSON payloads of a server-sent-events stream, up to `data: [DONE]`."""
    for line in lines:
        if not line.startswith("data:"):
            continue
        data = line[len("data:") :].strip()
        if data == "[DONE]":
            return
        if data:
            yield json.loads(data)


def assemble_stream(lines: Iterable[str]) -> ChatReply:
    """Join streamed deltas: content fragments, and tool calls whose first delta carries the id
    and name and whose later deltas carry argument fragments (keyed by the call's index)."""
    content: list[str] = []
    calls: dict[int, RawToolCall] = {}
    finish: str | None = None
    for event in stream_events(lines):
        for choice in event.get("choices") or []:
            delta = choice.get("delta") or {}
            content.append(delta.get("content") or "")
            for fragment in delta.get("tool_calls") or []:
                call = calls.setdefault(int(fragment.get("index", 0)), RawToolCall())
                call.id = call.id or fragment.get("id") or ""
                function = fragment.get("function") or {}
                call.name += function.get("name") or ""
                call.arguments += function.get("arguments") or ""
            finish = choice.get("finish_reason") or finish
    return ChatReply(
        content="".join(content),
        tool_calls=[calls[i] for i in sorted(calls)],
        finish_reason=finish,
        streamed=True,
    )
