from __future__ import annotations

import asyncio
import time

import nats.errors
import pytest
from nats.aio.msg import Msg

from mcpmesh.bus import Deadline, connect, flush
from mcpmesh.dev.natsproc import LocalNatsServer
from mcpmesh.proto.errors import ErrorCode, MeshException
from mcpmesh.proto.subjects import instance_queue_subject, instance_subject


async def test_flush_returns_once_a_new_subscription_is_in_force(
    nats_url: str, nats_server: LocalNatsServer
) -> None:
    """A request sent right after `flush` reaches the subscription made before it, every time
    (after nats-py's own `nc.flush()` some of these got *no responders*: its PING overtakes
    the SUB still in its buffer)."""
    bus = await connect(nats_url, name="t")
    service = await connect(nats_server.url_for("svc-echo"), name="echo")

    async def answer(msg: Msg) -> None:
        await msg.respond(b"here")

    missed = []
    try:
        for replica in (f"r{i}" for i in range(200)):  # a new subject each time: a new SUB
            await service.nc.subscribe(instance_queue_subject("echo", replica), queue="q", cb=answer)
            await flush(service.nc)
            try:
                await bus.nc.request(instance_subject("org-acme", "echo", replica), b"?", timeout=5)
            except nats.errors.NoRespondersError:
                missed.append(replica)
        assert missed == []
    finally:
        await service.close()
        await bus.close()


async def test_streams_are_created_idempotently_and_capture_events(nats_url: str) -> None:
    bus = await connect(nats_url, name="t")
    try:
        await bus.ensure_streams()
        await bus.ensure_streams()  # a second replica starting: no error, same streams
        before = (await bus.js.stream_info("AUDIT")).state.messages
        await bus.js.publish("audit.org-acme.gateway", b"{}")
        assert (await bus.js.stream_info("AUDIT")).state.messages == before + 1
        assert (await bus.js.stream_info("USAGE")).config.subjects == ["usage.>"]
    finally:
        await bus.close()


async def test_kv_bucket_is_created_on_first_use(nats_url: str) -> None:
    bus = await connect(nats_url, name="t")
    try:
        kv = await bus.kv("TEST_BUCKET_KV")
        await kv.put("org-acme", b"v1")
        again = await bus.kv("TEST_BUCKET_KV")
        assert (await again.get("org-acme")).value == b"v1"
    finally:
        await bus.close()


async def test_request_without_responders_fails_as_unavailable_within_the_deadline(nats_url: str) -> None:
    bus = await connect(nats_url, name="t")
    try:
        started = time.monotonic()
        with pytest.raises(MeshException) as info:
            await bus.request("mcp.org-acme.nobody", b"x", deadline=Deadline.after(0.5))
        assert info.value.error.code is ErrorCode.UNAVAILABLE and info.value.error.retryable
        assert time.monotonic() - started < 1.0
    finally:
        await bus.close()


async def test_re_sending_a_request_no_one_took_stops_long_before_a_long_deadline(
    nats_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mcpmesh.bus import connection

    monkeypatch.setattr(connection, "UNSENT_RETRY_S", 0.3)
    bus = await connect(nats_url, name="t")
    try:
        with pytest.raises(MeshException) as info:
            async with asyncio.timeout(30):  # a ten-minute deadline is not waited out
                await bus.request("mcp.org-acme.nobody", b"x", deadline=Deadline.after(600))
        assert info.value.error.code is ErrorCode.UNAVAILABLE and info.value.error.retryable
    finally:
        await bus.close()


async def test_no_responders_is_retried_until_a_service_appears(
    nats_url: str, nats_server: LocalNatsServer
) -> None:
    bus = await connect(nats_url, name="t")
    late = await connect(nats_server.url_for("svc-late"), name="late")
    try:

        async def answer(msg: object) -> None:
            await msg.respond(b"here")  # type: ignore[attr-defined]

        async def appear() -> None:
            await asyncio.sleep(0.3)
            await late.nc.subscribe("mcp.org-acme.late", cb=answer)

        task = asyncio.create_task(appear())
        msg = await bus.request("mcp.org-acme.late", b"x", deadline=Deadline.after(5))
        await task
        assert msg.data == b"here"
    finally:
        await late.close()
        await bus.close()


async def test_silent_service_times_out_at_the_deadline_and_deadline_travels(
    nats_url: str, nats_server: LocalNatsServer
) -> None:
    bus = await connect(nats_url, name="t")
    service = await connect(nats_server.url_for("svc-silent"), name="silent")
    seen: list[str] = []

    async def silent(msg: object) -> None:
        seen.append(msg.headers["Mcp-Deadline"])  # type: ignore[attr-defined]

    await service.nc.subscribe("mcp.org-acme.silent", cb=silent)
    await flush(service.nc)
    try:
        deadline = Deadline.after(0.4)
        with pytest.raises(MeshException) as info:
            await bus.request("mcp.org-acme.silent", b"x", deadline=deadline)
        assert info.value.error.code is ErrorCode.TIMEOUT
        assert seen == [deadline.header()]
    finally:
        await service.close()
        await bus.close()


def test_deadline_from_header_is_capped_by_the_local_default() -> None:
    far = str(int((time.time() + 3600) * 1000))
    assert Deadline.from_header(far, default_s=5).remaining() <= 5
    assert Deadline.from_header("garbage", default_s=5).remaining() > 4
    near = Deadline.after(1)
    assert abs(Deadline.from_header(near.header(), default_s=30).at - near.at) < 0.002


def test_redact_url_hides_only_the_password() -> None:
    from mcpmesh.bus import redact_url

    assert redact_url("nats://svc-context:s3cret@nats:4222") == "nats://svc-context:***@nats:4222"
    assert redact_url("nats://127.0.0.1:4222") == "nats://127.0.0.1:4222"


async def test_kv_handle_is_looked_up_once(nats_url: str) -> None:
    bus = await connect(nats_url, name="t")
    try:
        assert await bus.kv("TEST_BUCKET_ONCE") is await bus.kv("TEST_BUCKET_ONCE")
    finally:
        await bus.close()


async def test_a_request_that_reached_no_one_can_be_handed_back_unsent(nats_url: str) -> None:
    from mcpmesh.bus import NotDelivered

    bus = await connect(nats_url, name="t")
    try:
        with pytest.raises(NotDelivered) as info:
            await bus.request("mcp.org-acme.nobody", b"x", deadline=Deadline.after(5), retry_unsent=False)
        assert info.value.reason == "no responders"
        assert info.value.error.code is ErrorCode.UNAVAILABLE and info.value.error.retryable
    finally:
        await bus.close()


async def test_a_slow_reply_is_a_timeout_and_the_request_is_delivered_once(
    nats_url: str, nats_server: LocalNatsServer
) -> None:
    bus = await connect(nats_url, name="t")
    service = await connect(nats_server.url_for("svc-slow"), name="slow")
    deliveries: list[bytes] = []

    async def slow(msg: object) -> None:  # takes it, never answers in time
        deliveries.append(msg.data)  # type: ignore[attr-defined]

    await service.nc.subscribe("mcp.org-acme.slow", cb=slow)
    await flush(service.nc)
    try:
        with pytest.raises(MeshException) as info:
            await bus.request("mcp.org-acme.slow", b"once", deadline=Deadline.after(1))
        assert info.value.error.code is ErrorCode.TIMEOUT
        await asyncio.sleep(0.5)
        assert deliveries == [b"once"]  # sent, so never sent again (the service may have run it)
    finally:
        await service.close()
        await bus.close()


def test_a_services_retryable_verdict_survives_the_reply() -> None:
    from mcpmesh.bus.mcp import exception_from_error

    error = {
        "code": -32008,
        "message": "x",
        "data": {"code": "timeout", "message": "may have been applied", "retryable": False},
    }
    exc = exception_from_error(error)
    assert exc.error.code is ErrorCode.TIMEOUT and exc.error.retryable is False


def test_a_services_error_details_survive_and_a_bare_jsonrpc_error_keeps_its_meaning() -> None:
    from mcpmesh.bus.mcp import exception_from_error

    data = {"code": "unavailable", "message": "the provider is down", "retryable": True, "details": {"p": 1}}
    sent = exception_from_error({"code": -32010, "message": "x", "data": data}).error
    assert (sent.code, sent.message, sent.retryable, sent.details) == (
        ErrorCode.UNAVAILABLE,
        "the provider is down",
        True,
        {"p": 1},
    )
    # A server that sent no MeshError: the mesh code of its JSON-RPC code, else invalid_request.
    bare = exception_from_error({"code": -32603, "message": "boom"}).error
    assert (bare.code, bare.message, bare.retryable) == (ErrorCode.INTERNAL, "boom", False)
    assert exception_from_error({"code": -32010, "message": "busy"}).error.retryable is True
    assert exception_from_error({"code": -32601, "message": "no"}).error.code is ErrorCode.INVALID_REQUEST
