"""What a call to another service does with the bus's failures and the callee's notifications
(the end-to-end paths are in tests/gateway/test_hops.py and test_job_hops.py)."""

from __future__ import annotations

from typing import Any

import msgspec

from mcpmesh.proto.errors import ErrorCode, MeshException
from mcpmesh.service.call import RELAY, _not_answered, _progress_frames


def test_the_bus_failing_a_downstream_request_names_the_service_and_never_invites_a_double_run() -> None:
    unsent = _not_answered("llm", "tools/call", MeshException(ErrorCode.UNAVAILABLE, "x")).error
    assert (unsent.code, unsent.retryable, unsent.details) == (
        ErrorCode.UNAVAILABLE,
        True,
        {"service": "llm"},
    )
    assert "service 'llm' is unavailable" in unsent.message
    late_call = _not_answered("llm", "tools/call", MeshException(ErrorCode.TIMEOUT, "x")).error
    assert (late_call.code, late_call.retryable) == (ErrorCode.TIMEOUT, False)  # it may have run
    late_read = _not_answered("llm", "resources/read", MeshException(ErrorCode.TIMEOUT, "x")).error
    assert late_read.retryable is True
    too_big = MeshException(ErrorCode.LIMIT_EXCEEDED, "the result is too large")
    assert _not_answered("llm", "tools/call", too_big) is too_big


async def test_a_callees_notifications_go_to_the_function_or_on_to_the_caller() -> None:
    got: list[Any] = []
    forwarded: list[dict[str, Any]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        got.append((progress, total, message))

    async def forward(message: dict[str, Any]) -> None:
        forwarded.append(message)

    progress = msgspec.json.encode(
        {
            "jsonrpc": "2.0",
            "method": "notifications/progress",
            "params": {"progressToken": "t", "progress": 2, "total": 4},
        }
    )
    log_line = msgspec.json.encode(
        {"jsonrpc": "2.0", "method": "notifications/message", "params": {"data": "x"}}
    )
    assert _progress_frames(None, forward) is None  # nothing asked of the callee
    assert _progress_frames(RELAY, None) is None  # nobody to relay to
    frames = _progress_frames(on_progress, forward)
    assert frames is not None
    for raw in (progress, log_line, b"not json", b"[1]"):
        await frames(raw)
    assert got == [(2, 4, None)]
    assert [m["method"] for m in forwarded] == ["notifications/message"]
    relay = _progress_frames(RELAY, forward)
    assert relay is not None
    await relay(progress)
    assert forwarded[-1]["params"]["progress"] == 2
