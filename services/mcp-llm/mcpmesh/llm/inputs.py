"""Checking what callers send to `chat`, `embed` and `count_tokens`: a clear invalid_request
saying what is expected, never a provider's or pydantic's text."""

from __future__ import annotations

from typing import Any, Final

from mcpmesh.llm.providers import invalid

ROLES: Final = ("system", "developer", "user", "assistant", "tool")
MAX_MESSAGES: Final = 4096


def check_messages(messages: object) -> list[dict[str, Any]]:
    if not isinstance(messages, list) or not 1 <= len(messages) <= MAX_MESSAGES:
        raise invalid(
            f'messages must be a list of 1-{MAX_MESSAGES} messages, e.g. [{{"role": "user", "content": "hi"}}]'
        )
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise invalid(f"messages[{i}] must be an object whose role is one of {list(ROLES)}")
        content = m.get("content")
        if content is None and not (m["role"] == "assistant" and m.get("tool_calls")):
            raise invalid(
                f"messages[{i}] has no content (only an assistant message with tool_calls may omit it)"
            )
        if content is not None and not isinstance(content, str | list):
            raise invalid(f"messages[{i}].content must be a string or a list of content parts")
    return messages


def check_texts(texts: object, limit: int) -> list[str]:
    if isinstance(texts, str):
        texts = [texts]
    if (
        not isinstance(texts, list)
        or not 1 <= len(texts) <= limit
        or not all(isinstance(t, str) and t for t in texts)
    ):
        raise invalid(f"texts must be 1-{limit} non-empty strings")
    return texts


def chat_request(
    messages: object,
    *,
    temperature: float | None,
    max_tokens: int | None,
    stop: str | list[str] | None,
    response_format: dict[str, Any] | None,
    tools: list[dict[str, Any]] | None,
    tool_choice: str | dict[str, Any] | None,
) -> dict[str, Any]:
    """The provider request (without the model): only the parameters the caller gave."""
    if temperature is not None and not 0 <= temperature <= 2:
        raise invalid("temperature must be between 0 and 2")
    if max_tokens is not None and max_tokens < 1:
        raise invalid("max_tokens must be at least 1")
    request: dict[str, Any] = {"messages": check_messages(messages)}
    optional = {
        "temperature": temperature,
        "max_tokens": max_tokens,
        "stop": stop,
        "response_format": response_format,
        "tools": tools,
        "tool_choice": tool_choice,
    }
    request.update({k: v for k, v in optional.items() if v is not None})
    return request
