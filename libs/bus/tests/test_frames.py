"""Replies streamed as frames over a real, locked-down nats-server: the service's NATS user may
answer a request with many messages (allow_responses), and the caller reassembles them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from nats.micro.request import Request

from mcpmesh.bus import Bus, Deadline, connect
from mcpmesh.bus.frames import ReplyWriter, wants_stream
from mcpmesh.dev.natsproc import LocalNatsServer
from mcpmesh.proto import headers as h
from mcpmesh.proto.errors import ErrorCode, MeshException

SUBJECT = "mcp.org-acme.streamer"
MIB = 1024 * 1024

Responder = Callable[[ReplyWriter, bytes], Awaitable[None]]


@pytest.fixture
async def buses(nats_server: LocalNatsServer) -> AsyncIterator[tuple[Bus, Bus]]:
    caller = await connect(nats_server.url_for("gateway"), name="caller")
    service = await connect(nats_server.url_for("svc-streamer"), name="streamer")
    yield caller, service
    await caller.close()
    await service.close()


async def serve(service: Bus, respond: Responder, *, max_result_bytes: int = 16 * MIB) -> list[bool]:
    """Answer SUBJECT through a ReplyWriter, as the kit does; returns whether each asked for a stream."""
    asked: list[bool] = []

    async def on_request(msg: object) -> None:
        req = Request(msg)  # type: ignore[arg-type]
        asked.append(wants_stream(req.headers))
        writer = ReplyWriter(
            req.respond,
            service.nc.max_payload,
            streaming=wants_stream(req.headers),
            max_result_bytes=max_result_bytes,
        )
        await respond(writer, req.data)

    await service.nc.subscribe(SUBJECT, cb=on_request)
    await service.nc.flush()
    return asked


async def test_progress_frames_then_a_3_mib_response_in_parts(buses: tuple[Bus, Bus]) -> None:
    caller, service = buses
    big = b"y" * (3 * MIB)

    async def respond(writer: ReplyWriter, _data: bytes) -> None:
        for i in range(50):
            await writer.progress(b'{"n": %d}' % i)
        await writer.finish(big)

    asked = await serve(service, respond)
    seen: list[bytes] = []

    async def relay(notification: bytes) -> None:
        seen.append(notification)

    reply = await caller.request_stream(
        SUBJECT, b"go", deadline=Deadline.after(10), max_result_bytes=16 * MIB, on_progress=relay
    )
    assert reply == big
    assert seen == [b'{"n": %d}' % i for i in range(50)]
    # Without on_progress the service is not asked for a stream: its progress is dropped.
    again = await caller.request_stream(
        SUBJECT, b"go", deadline=Deadline.after(10), max_result_bytes=16 * MIB
    )
    assert again == big
    assert asked == [True, False]


async def test_progress_past_the_frame_budget_is_dropped_never_the_response(buses: tuple[Bus, Bus]) -> None:
    caller, service = buses

    async def respond(writer: ReplyWriter, _data: bytes) -> None:
        for _ in range(h.STREAM_MAX_FRAMES + 500):
            await writer.progress(b"{}")
        await writer.finish(b"z" * (2 * MIB))

    await serve(service, respond)
    count = 0

    async def relay(_notification: bytes) -> None:
        nonlocal count
        count += 1

    reply = await caller.request_stream(
        SUBJECT, b"go", deadline=Deadline.after(20), max_result_bytes=16 * MIB, on_progress=relay
    )
    assert reply == b"z" * (2 * MIB)
    assert 0 < count < h.STREAM_MAX_FRAMES


async def test_a_response_past_the_callers_limit_is_limit_exceeded(buses: tuple[Bus, Bus]) -> None:
    caller, service = buses

    async def respond(writer: ReplyWriter, _data: bytes) -> None:
        await writer.finish(b"x" * (3 * MIB))

    await serve(service, respond)
    with pytest.raises(MeshException) as info:
        await caller.request_stream(SUBJECT, b"go", deadline=Deadline.after(10), max_result_bytes=2 * MIB)
    assert info.value.error.code is ErrorCode.LIMIT_EXCEEDED
    assert info.value.error.retryable is False
    assert "over the 2097152-byte limit on a result (MCPMESH_MAX_RESULT_BYTES)" in info.value.error.message


async def test_the_writer_refuses_a_response_past_its_limit(buses: tuple[Bus, Bus]) -> None:
    _caller, service = buses
    sent: list[bytes] = []

    async def record(data: bytes, _headers: dict[str, str] | None) -> None:
        sent.append(data)

    writer = ReplyWriter(record, service.nc.max_payload, streaming=True, max_result_bytes=MIB)
    with pytest.raises(MeshException) as info:
        await writer.finish(b"x" * (MIB + 1))
    assert info.value.error.code is ErrorCode.LIMIT_EXCEEDED
    assert f"is {MIB + 1} bytes, over the {MIB}-byte limit" in info.value.error.message
    assert sent == []


async def test_a_lost_frame_is_an_internal_error(buses: tuple[Bus, Bus]) -> None:
    caller, service = buses

    async def on_request(msg: object) -> None:
        req = Request(msg)  # type: ignore[arg-type]
        await req.respond(b"a", {h.FRAME: h.FRAME_PART, h.SEQ: "0"})
        await req.respond(b"c", {h.FRAME: h.FRAME_END, h.SEQ: "2"})  # seq 1 never came

    await service.nc.subscribe(SUBJECT, cb=on_request)
    await service.nc.flush()
    with pytest.raises(MeshException) as info:
        await caller.request_stream(SUBJECT, b"go", deadline=Deadline.after(5), max_result_bytes=MIB)
    assert info.value.error.code is ErrorCode.INTERNAL
    assert "lost a frame" in info.value.error.message


async def test_no_responders_is_unavailable(buses: tuple[Bus, Bus]) -> None:
    caller, _service = buses
    with pytest.raises(MeshException) as info:
        await caller.request_stream(
            "mcp.org-acme.nobody", b"x", deadline=Deadline.after(0.5), max_result_bytes=MIB
        )
    assert info.value.error.code is ErrorCode.UNAVAILABLE
