"""Store kinds (per tenant, `<org>__<kind>`):
debates     one document per debate (spec, status, outcome, totals, job id, transcript ctx id)
turns       one document per turn taken (`_id = <debate>:<idx>`): participant, round, model,
            text, tokens, cost — the run's checkpoint and the analytics' source
templates   the org's debate templates, `_id` = template name
"""

from __future__ import annotations

from typing import Final

from mcpmesh.store import Index

STORE_KINDS: Final[dict[str, list[Index]]] = {
    "debates": [Index(keys=[("created_at", -1), ("_id", -1)]), Index(keys=[("status", 1)])],
    "turns": [Index(keys=[("debate_id", 1), ("idx", 1)]), Index(keys=[("model", 1)])],
    "templates": [],
    "invites": [Index(keys=[("debate_id", 1), ("grantee", 1)])],
    "invitations": [Index(keys=[("at", -1)])],
}
