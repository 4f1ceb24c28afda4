"""Each org's configuration (providers, aliases, version; not its keys), kept briefly per
replica, so a call needs no store reads for it. This replica's own edits drop the entry at once;
another replica's are seen once the entry is `LLM_CONFIG_TTL_S` old."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Final

from mcpmesh.llm.orgconfig import OrgConfig

#: Orgs whose configuration one replica keeps (least recently used dropped first).
MAX_ORGS: Final = 10_000


def now() -> float:
    """The cache's clock (tests move it)."""
    return time.monotonic()


class ConfigCache:
    def __init__(self, ttl_s: float, max_orgs: int = MAX_ORGS) -> None:
        self.ttl_s = ttl_s
        self.max_orgs = max_orgs
        self._entries: OrderedDict[str, tuple[float, OrgConfig]] = OrderedDict()
        #: Bumped by `forget`: a load that began before an edit does not keep what it read.
        self._generation = 0

    async def get(self, org_id: str, load: Callable[[], Awaitable[OrgConfig]]) -> OrgConfig:
        entry = self._entries.get(org_id)
        if entry is not None and now() - entry[0] < self.ttl_s:
            self._entries.move_to_end(org_id)
            return entry[1]
        generation, loaded_at = self._generation, now()
        config = await load()
        if self.ttl_s > 0 and self._generation == generation:
            self._entries[org_id] = (loaded_at, config)
            self._entries.move_to_end(org_id)
            while len(self._entries) > self.max_orgs:
                self._entries.popitem(last=False)
        return config

    def forget(self, org_id: str) -> None:
        """The org's configuration changed (on this replica): the next call reads it again."""
        self._entries.pop(org_id, None)
        self._generation += 1
