"""An OpenAI-compatible provider for tests: a real aiohttp server speaking /v1/chat/completions
(JSON and SSE streaming) and /v1/embeddings, recording every request and answering as scripted.

    async with FakeProvider() as fake:
        fake.script("429", "ok")          # the next two chat/embedding requests: a 429, then a normal answer
        fake.url                          # http://127.0.0.1:<port>/v1
        fake.answer = lambda body: ...    # a chat reply computed from the request (default: `reply`)
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Seen:
    path: str
    authorization: str | None
    body: dict[str, Any]


@dataclass
class FakeProvider:
    prompt_tokens: int = 11
    completion_tokens: int = 7
    cached_tokens: int = 0
    reply: str = "hello from the fake"
    slow_s: float = 5.0
    #: The chat reply to a request body, when set (else `reply`).
    answer: Callable[[dict[str, Any]], str] | None = None
    #: The embedding of one input text, when set (else a 3-d vector of its length).
    embedding: Callable[[str], list[float]] | None = None
    requests: list[Seen] = field(default_factory=list)
    _script: list[str] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def script(self, *outcomes: str) -> None:
        """The outcomes of the next requests, in order ("ok", "429", "500", "503", "400", "401",
        "slow", "context"); past the script, every request is "ok"."""
        self._script.extend(outcomes)

    async def __aenter__(self) -> FakeProvider:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/embeddings", self._embeddings)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def _outcome(self, request: web.Request) -> tuple[dict[str, Any], web.Response | None]:
        body = await request.json()
        self.requests.append(Seen(request.path, request.headers.get("Authorization"), body))
        outcome = self._script.pop(0) if self._script else "ok"
        if outcome == "slow":
            await asyncio.sleep(self.slow_s)
            return body, None
        if outcome == "context":
            error = {
                "message": "This model's maximum context length is 10 tokens",
                "code": "context_length_exceeded",
            }
            return body, web.json_response({"error": {**error, "type": "invalid_request_error"}}, status=400)
        if outcome != "ok":
            error = {"message": f"scripted {outcome}", "type": "fake_error", "code": outcome}
            return body, web.json_response({"error": error}, status=int(outcome))
        return body, None

    def _usage(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens},
        }

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body, refused = await self._outcome(request)
        if refused is not None:
            return refused
        model = body.get("model", "?")
        text = self.answer(body) if self.answer is not None else self.reply
        if not body.get("stream"):
            return web.json_response(
                {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion",
                    "created": 1,
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": text},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": self._usage(),
                }
            )
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        words = text.split(" ")
        for i, word in enumerate(words):
            delta = {"content": word if i == 0 else " " + word}
            if i == 0:
                delta["role"] = "assistant"
            chunk = {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
            }
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        last = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": model,
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        }
        await response.write(f"data: {json.dumps(last)}\n\n".encode())
        if (body.get("stream_options") or {}).get("include_usage"):
            usage = {**last, "choices": [], "usage": self._usage()}
            await response.write(f"data: {json.dumps(usage)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def _embeddings(self, request: web.Request) -> web.Response:
        body, refused = await self._outcome(request)
        if refused is not None:
            return refused
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [
            {
                "object": "embedding",
                "index": i,
                "embedding": self.embedding(text) if self.embedding else [float(len(text)), float(i), 1.0],
            }
            for i, text in enumerate(inputs)
        ]
        tokens = sum(len(str(t).split()) for t in inputs)
        return web.json_response(
            {
                "object": "list",
                "data": data,
                "model": body.get("model"),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )
