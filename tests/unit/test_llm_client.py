"""The chat-completions client over httpx's mock transport: plain and streamed replies,
retries with backoff on transient failures, clear errors otherwise."""

from __future__ import annotations

import json

import httpx
import pytest

from radpilot.llm.client import ChatClient, ChatRequest, LLMUnavailableError, endpoint_root

REQUEST = ChatRequest(
    messages=[{"role": "user", "content": "hi"}],
    tools=[{"type": "function"}],
    tool_choice="required",
)


def sse(*events: dict[str, object]) -> bytes:
    lines = [f"data: {json.dumps(e)}\n\n" for e in events] + ["data: [DONE]\n\n"]
    return "".join(lines).encode()


def client(handler: httpx.MockTransport, *, stream: bool, sleeps: list[float]) -> ChatClient:
    return ChatClient(
        "http://llm:8000",
        "tiny",
        transport=handler,
        stream=stream,
        retries=2,
        backoff_s=0.5,
        sleep=sleeps.append,
    )


def test_endpoint_root_accepts_the_usual_spellings() -> None:
    for url in ("http://h:1", "http://h:1/", "http://h:1/v1", "http://h:1/v1/"):
        assert endpoint_root(url) == "http://h:1/v1/"


def test_a_plain_reply_is_parsed_and_the_request_is_strict() -> None:
    seen: list[dict[str, object]] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        assert request.url.path == "/v1/chat/completions"
        message = {"tool_calls": [{"id": "x", "function": {"name": "answer", "arguments": "{}"}}]}
        return httpx.Response(
            200, json={"choices": [{"message": message, "finish_reason": "tool_calls"}]}
        )

    reply = client(httpx.MockTransport(handle), stream=False, sleeps=[]).complete(REQUEST)
    assert reply.tool_calls[0].name == "answer" and not reply.streamed
    assert seen[0]["model"] == "tiny" and seen[0]["parallel_tool_calls"] is False
    assert seen[0]["tool_choice"] == "required" and seen[0]["stream"] is False


def test_a_streamed_tool_call_is_assembled_from_its_fragments() -> None:
    first = {
        "index": 0,
        "id": "call_1",
        "type": "function",
        "function": {"name": "localize_finding", "arguments": ""},
    }
    body = sse(
        {"choices": [{"delta": {"role": "assistant"}}]},
        {"choices": [{"delta": {"tool_calls": [first]}}]},
        {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": '{"st'}}]}}]},
        {
            "choices": [
                {
                    "delta": {
                        "tool_calls": [
                            {
                                "index": 0,
                                "function": {"arguments": 'udy_id": "st_a", "finding": "Mass"}'},
                            }
                        ]
                    },
                    "finish_reason": "tool_calls",
                }
            ]
        },
    )
    transport = httpx.MockTransport(lambda r: httpx.Response(200, content=body))
    reply = client(transport, stream=True, sleeps=[]).complete(REQUEST)
    assert reply.streamed and reply.finish_reason == "tool_calls"
    assert reply.tool_calls[0].id == "call_1" and reply.tool_calls[0].name == "localize_finding"
    assert json.loads(reply.tool_calls[0].arguments) == {"study_id": "st_a", "finding": "Mass"}


def test_transient_failures_are_retried_with_exponential_backoff() -> None:
    statuses = iter([503, 429])

    def handle(request: httpx.Request) -> httpx.Response:
        status = next(statuses, 200)
        if status != 200:
            return httpx.Response(status, text="busy")
        return httpx.Response(200, json={"choices": [{"message": {"content": "ok"}}]})

    sleeps: list[float] = []
    reply = client(httpx.MockTransport(handle), stream=False, sleeps=sleeps).complete(REQUEST)
    assert reply.content == "ok" and sleeps == [0.5, 1.0]


def test_a_down_server_is_a_clear_error_after_the_retries() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    sleeps: list[float] = []
    with pytest.raises(LLMUnavailableError, match="did not answer after 3 attempt"):
        client(httpx.MockTransport(handle), stream=True, sleeps=sleeps).complete(REQUEST)
    assert sleeps == [0.5, 1.0]


def test_a_refused_request_is_not_retried() -> None:
    calls: list[int] = []

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(400, json={"message": "bad schema"})

    with pytest.raises(LLMUnavailableError, match="HTTP 400"):
        client(httpx.MockTransport(handle), stream=True, sleeps=[]).complete(REQUEST)
    assert len(calls) == 1


def test_an_unreadable_reply_is_a_clear_error() -> None:
    transport = httpx.MockTransport(lambda r: httpx.Response(200, text="<html>proxy</html>"))
    with pytest.raises(LLMUnavailableError, match="could not be read"):
        client(transport, stream=False, sleeps=[]).complete(REQUEST)
