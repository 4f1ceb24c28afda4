"""The built-in offline provider (litellm custom provider `mesh-offline`): no network, no key,
deterministic. It is served through the same litellm Router as any other provider, so
`./mesh up` and mcp-rag work end to end on a machine without internet.

- chat `echo`: answers "[offline mock] " + the last user message, word by word when streamed;
- embedding `hash-embed`: a hashing embedder (signed feature hashing of lowercased words and
  word pairs into DIMENSIONS, L2-normalized): texts sharing words are close, equal texts equal.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re
from collections.abc import AsyncIterator
from typing import Any, Final

import litellm
from litellm.llms.custom_llm import CustomLLM
from litellm.types.utils import EmbeddingResponse, GenericStreamingChunk, ModelResponse

KIND: Final = "mesh-offline"
LABEL: Final = "[offline mock] "
DIMENSIONS: Final = 256
_WORD: Final = re.compile(r"\w+")


def hash_embedding(text: str, dimensions: int = DIMENSIONS) -> list[float]:
    words = _WORD.findall(text.lower())
    vector = [0.0] * dimensions
    for feature in [*words, *(f"{a} {b}" for a, b in itertools.pairwise(words))]:
        digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
        index = int.from_bytes(digest[:4], "big") % dimensions
        vector[index] += 1.0 if digest[4] & 1 else -1.0
    norm = math.sqrt(sum(v * v for v in vector))
    return [v / norm for v in vector] if norm else vector


def word_tokens(text: str) -> int:
    """Tokens counted as words (the in-process providers have no billing tokenizer)."""
    return max(1, len(_WORD.findall(text)))


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def answer(messages: list[dict[str, Any]]) -> tuple[str, int]:
    """The reply and the prompt's token count (words)."""
    users = [_text(m.get("content")) for m in messages if m.get("role") == "user"]
    prompt_tokens = sum(word_tokens(_text(m.get("content"))) for m in messages)
    return LABEL + (users[-1] if users else ""), prompt_tokens


class OfflineLLM(CustomLLM):
    async def acompletion(self, *args: Any, **kwargs: Any) -> ModelResponse:  # type: ignore[override]
        reply, prompt_tokens = answer(kwargs["messages"])
        completion_tokens = word_tokens(reply)
        response: ModelResponse = kwargs["model_response"]
        response.choices[0].message.content = reply  # type: ignore[union-attr]
        response.choices[0].finish_reason = "stop"
        response.model = kwargs["model"]
        response.usage = litellm.Usage(  # type: ignore[attr-defined]
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            total_tokens=prompt_tokens + completion_tokens,
        )
        return response

    async def astreaming(self, *args: Any, **kwargs: Any) -> AsyncIterator[GenericStreamingChunk]:  # type: ignore[override]
        reply, prompt_tokens = answer(kwargs["messages"])
        words = reply.split(" ")
        for i, word in enumerate(words):
            last = i == len(words) - 1
            yield GenericStreamingChunk(
                text=word if i == 0 else " " + word,
                is_finished=last,
                finish_reason="stop" if last else "",
                usage={
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": word_tokens(reply),
                    "total_tokens": prompt_tokens + word_tokens(reply),
                }
                if last
                else None,
                index=0,
                tool_use=None,
            )

    async def aembedding(self, *args: Any, **kwargs: Any) -> EmbeddingResponse:  # type: ignore[override]
        texts = [str(t) for t in kwargs["input"]]
        response: EmbeddingResponse = kwargs["model_response"]
        response.data = [
            {"object": "embedding", "index": i, "embedding": hash_embedding(t)} for i, t in enumerate(texts)
        ]
        response.model = kwargs["model"]
        tokens = sum(word_tokens(t) for t in texts)
        response.usage = litellm.Usage(prompt_tokens=tokens, completion_tokens=0, total_tokens=tokens)  # type: ignore[attr-defined]
        return response


def register_handler(kind: str, handler: CustomLLM) -> None:
    """Make `<kind>/<model>` a litellm provider served by `handler` (once per process)."""
    if not any(p.get("provider") == kind for p in litellm.custom_provider_map):
        litellm.custom_provider_map = [
            *litellm.custom_provider_map,
            {"provider": kind, "custom_handler": handler},
        ]
        litellm.utils.custom_llm_setup()


def register() -> None:
    register_handler(KIND, OfflineLLM())
