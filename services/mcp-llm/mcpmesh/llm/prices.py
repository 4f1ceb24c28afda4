"""Model prices and context windows from litellm's bundled cost map, read from its own file.

Not `litellm.model_cost`: that dict is process-wide and mutable (a Router registers the prices
of its deployments in it), so one org's custom prices would price another org's calls. The
provider table's own prices come first (`usage.meter`, `admin.described`); this is the rest.
"""

from __future__ import annotations

import functools
import json
from importlib.resources import files
from typing import Any

from mcpmesh.llm.providers import Deployment


@functools.cache
def _bundled() -> dict[str, dict[str, Any]]:
    raw = files("litellm").joinpath("model_prices_and_context_window_backup.json").read_bytes()
    table: dict[str, dict[str, Any]] = json.loads(raw)
    return table


def known(deployment: Deployment) -> dict[str, Any] | None:
    """The bundled entry of the deployment's model (`<kind>/<model>`, else the bare model id of
    that same provider kind), or None."""
    table = _bundled()
    kind, upstream = deployment.provider.kind, deployment.model.upstream
    entry = table.get(f"{kind}/{upstream}")
    if entry is None:
        bare = table.get(upstream)
        entry = bare if bare is not None and bare.get("litellm_provider") == kind else None
    return entry


def cost(deployment: Deployment, prompt: int, completion: int, cached: int) -> float | None:
    """US dollars for the tokens (cached prompt tokens at the cache-read price when there is
    one), or None when the model is not in the map."""
    entry = known(deployment)
    if entry is None:
        return None
    inp = float(entry.get("input_cost_per_token") or 0.0)
    out = float(entry.get("output_cost_per_token") or 0.0)
    read = entry.get("cache_read_input_token_cost")
    cached = min(cached, prompt) if read is not None else 0
    return (prompt - cached) * inp + cached * float(read or 0.0) + completion * out
