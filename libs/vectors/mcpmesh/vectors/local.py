"""Qdrant local mode off the event loop: the synchronous client on one worker thread.

qdrant-client's local mode (a directory, or `:memory:`) does all its work in Python: brute-force
scoring, payload filters, SQLite writes. Its AsyncQdrantClient only wraps that in `async def`,
so one search over a large kb held the event loop, and every other tenant's call on the
replica, for seconds. `LocalQdrant` makes the same calls on a thread of its own, so the loop
stays free (the search is no faster). One thread, not a pool: calls run in the order they were
made and local mode, which is not meant for concurrent use, has a single user. Its methods are
the AsyncQdrantClient ones `mcpmesh.vectors` calls, with the same arguments and results.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

from qdrant_client import QdrantClient

P = ParamSpec("P")
T = TypeVar("T")


class LocalQdrant:
    """A local-mode Qdrant (`path=` or `location=":memory:"`) whose calls run on one thread."""

    def __init__(self, **options: Any) -> None:
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qdrant-local")
        # Opened on the worker, as every later call is made there (its SQLite connections
        # included); the thread check is off only so that garbage collection, which may run
        # on any thread, can close it a second time.
        opening = self._worker.submit(QdrantClient, force_disable_check_same_thread=True, **options)
        try:
            client = opening.result()
        except BaseException:
            self._worker.shutdown()
            raise
        self._client = client
        self._closed = False
        self.collection_exists = self._off_loop(client.collection_exists)
        self.create_collection = self._off_loop(client.create_collection)
        self.get_collection = self._off_loop(client.get_collection)
        self.get_collections = self._off_loop(client.get_collections)
        self.delete_collection = self._off_loop(client.delete_collection)
        self.upsert = self._off_loop(client.upsert)
        self.delete = self._off_loop(client.delete)
        self.count = self._off_loop(client.count)
        self.query_points = self._off_loop(client.query_points)
        self.scroll = self._off_loop(client.scroll)

    @property
    def init_options(self) -> dict[str, Any]:
        return self._client.init_options

    @property
    def closed(self) -> bool:
        return self._closed

    def _off_loop(self, method: Callable[P, T]) -> Callable[P, Coroutine[Any, Any, T]]:
        """`method` as a coroutine function that runs it on the worker thread."""

        @functools.wraps(method)
        async def call(*args: P.args, **kwargs: P.kwargs) -> T:
            work = functools.partial(method, *args, **kwargs)
            return await asyncio.get_running_loop().run_in_executor(self._worker, work)

        return call

    async def close(self) -> None:
        """Close the client (releasing the directory's lock) after the calls already made, and
        end the thread; a call made later is refused (RuntimeError)."""
        if self._closed:
            return
        self._closed = True
        closing = self._worker.submit(self._client.close)
        self._worker.shutdown(wait=False)  # the close is the last work it takes
        await asyncio.wrap_future(closing)
        self._worker.shutdown()  # the thread ends: nothing is left to wait for
