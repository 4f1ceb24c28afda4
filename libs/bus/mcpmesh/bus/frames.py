"""Streamed replies: progress frames and a response larger than one NATS message.

The frame protocol is defined in `mcpmesh.proto.headers` (FRAME, SEQ). `ReplyWriter` is the
service's end: it sends progress notifications while a call runs, then the response, cut into
parts when it does not fit in one message. `ReplyInbox` is the caller's end: one wildcard
subscription per connection, one queue per request in flight, the response reassembled in
order and bounded by a size limit.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Mapping
from typing import Final

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from mcpmesh.proto import headers as h
from mcpmesh.proto.errors import ErrorCode, MeshException

#: What a relayed progress frame is handed to: the raw JSON-RPC notification.
OnProgress = Callable[[bytes], Awaitable[None]]
#: Publishes one reply message, with optional headers (nats.micro's `Request.respond`).
Respond = Callable[[bytes, dict[str, str] | None], Awaitable[None]]

_STATUS: Final = "Status"
_NO_RESPONDERS: Final = "503"
#: Room left in each part for the frame's headers (and the server's own framing).
_HEADROOM: Final = 1024


class ResultTooLarge(MeshException):
    def __init__(self, size: int | None, limit: int) -> None:
        shown = "more than" if size is None else f"{size} bytes,"
        super().__init__(
            ErrorCode.LIMIT_EXCEEDED,
            f"the result is {shown} over the {limit}-byte limit on a result (MCPMESH_MAX_RESULT_BYTES): "
            "ask for less (a page, a filter) or raise the limit",
        )


class ReplyWriter:
    """The service's end of one request's reply inbox."""

    def __init__(self, respond: Respond, max_payload: int, *, streaming: bool, max_result_bytes: int) -> None:
        self.respond = respond  # publishes one message (with headers) to the request's reply inbox
        self.max_payload = max_payload
        self.streaming = streaming  # the caller asked for progress frames (and relays them)
        self.max_result_bytes = max_result_bytes
        self._seq = 0
        self.dropped = 0  # progress frames left out once the frame budget was nearly spent

    async def progress(self, notification: bytes) -> None:
        """Send one progress frame (a whole JSON-RPC notification), if the caller asked for them."""
        if not self.streaming:
            return
        parts_needed = self.max_result_bytes // self._part_size() + 1
        if self._seq + parts_needed >= h.STREAM_MAX_FRAMES:
            self.dropped += 1
            return
        await self._send(h.FRAME_PROGRESS, notification)

    async def finish(self, response: bytes) -> None:
        """Send the response: one plain message when it fits and nothing was streamed before it,
        else as parts. Raises ResultTooLarge past `max_result_bytes` (nothing is sent then)."""
        if len(response) > self.max_result_bytes:
            raise ResultTooLarge(len(response), self.max_result_bytes)
        size = self._part_size()
        if self._seq == 0 and len(response) <= size:
            await self.respond(response, None)
            return
        view = memoryview(response)
        starts = range(0, max(len(response), 1), size)
        for i, start in enumerate(starts):
            kind = h.FRAME_END if i == len(starts) - 1 else h.FRAME_PART
            await self._send(kind, bytes(view[start : start + size]))

    def _part_size(self) -> int:
        return max(self.max_payload - _HEADROOM, _HEADROOM)

    async def _send(self, kind: str, data: bytes) -> None:
        headers = {h.FRAME: kind, h.SEQ: str(self._seq)}
        self._seq += 1
        await self.respond(data, headers)


class ReplyInbox:
    """The caller's end: a wildcard subscription on one inbox of this connection, one queue per
    request in flight. `open()` gives a reply subject; `collect()` returns the response."""

    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self._prefix = ""
        self._queues: dict[str, asyncio.Queue[Msg]] = {}
        self._ids = itertools.count()
        self._lock = asyncio.Lock()

    async def open(self) -> tuple[str, asyncio.Queue[Msg]]:
        if not self._prefix:
            async with self._lock:
                if not self._prefix:
                    prefix = self.nc.new_inbox()
                    await self.nc.subscribe(f"{prefix}.*", cb=self._deliver)
                    self._prefix = prefix
        token = str(next(self._ids))
        queue: asyncio.Queue[Msg] = asyncio.Queue()
        self._queues[token] = queue
        return f"{self._prefix}.{token}", queue

    def close(self, reply: str) -> None:
        self._queues.pop(reply.rpartition(".")[2], None)

    async def _deliver(self, msg: Msg) -> None:
        queue = self._queues.get(msg.subject.rpartition(".")[2])
        if queue is not None:  # a late frame of a request given up on is dropped
            queue.put_nowait(msg)

    @staticmethod
    async def collect(
        queue: asyncio.Queue[Msg],
        *,
        wait_s: float,
        max_result_bytes: int,
        on_progress: OnProgress | None = None,
    ) -> bytes:
        """The response: one plain message, or the frames of a stream in order. Raises
        nats TimeoutError / NoRespondersError like `nc.request`, ResultTooLarge past the limit."""
        loop = asyncio.get_running_loop()
        until = loop.time() + wait_s
        parts: list[bytes] = []
        size = 0
        expected = 0
        while True:
            left = until - loop.time()
            if left <= 0:
                raise nats.errors.TimeoutError
            try:
                msg = await asyncio.wait_for(queue.get(), left)
            except TimeoutError:
                raise nats.errors.TimeoutError from None
            headers = msg.headers or {}
            kind = headers.get(h.FRAME)
            if kind is None:
                if headers.get(_STATUS) == _NO_RESPONDERS and not msg.data:
                    raise nats.errors.NoRespondersError
                return bytes(msg.data)
            if headers.get(h.SEQ) != str(expected):
                raise MeshException(
                    ErrorCode.INTERNAL, "the service's reply stream lost a frame: the call may have run"
                )
            expected += 1
            if kind == h.FRAME_PROGRESS:
                if on_progress is not None:
                    await on_progress(bytes(msg.data))
                continue
            size += len(msg.data)
            if size > max_result_bytes:
                raise ResultTooLarge(None, max_result_bytes)
            parts.append(bytes(msg.data))
            if kind == h.FRAME_END:
                return b"".join(parts)


def wants_stream(headers: Mapping[str, str] | None) -> bool:
    return (headers or {}).get(h.STREAM) == "1"
