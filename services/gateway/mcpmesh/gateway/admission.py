"""Admission at the MCP endpoints: each replica bounds the MCP requests it works on at once
and the queue in front of them, with a fair share per org (the kit's `Admission` gate,
`MCPMESH_MAX_INFLIGHT`, `MCPMESH_MAX_QUEUED`, `MCPMESH_QUEUE_WAIT_S`, `MCPMESH_ORG_SHARE`).

Past the bounds a request is answered at once with 503, `Retry-After: 1` and a sentence
saying so, counted in `mcpmesh_admission_refused_total{reason}`; it is not queued until the
call deadline (504). Such a refusal is the cheapest answer the gateway has: it gets no log
line and no audit event of its own (`Admission` logs the counts every few seconds), since
recording each one would spend the very capacity that is missing.

Only JSON-RPC requests are admitted this way; a 2025-11-25 GET event stream stays open for
as long as its session and holds no slot.
"""

from __future__ import annotations

from mcpmesh.gateway.errors import GatewayError
from mcpmesh.gateway.observe import GatewayMetrics
from mcpmesh.proto.errors import ErrorCode
from mcpmesh.service.admission import Admission, AdmissionLimits, Overloaded

RETRY_AFTER = {"Retry-After": "1"}


class GatewayAdmission:
    def __init__(self, limits: AdmissionLimits, metrics: GatewayMetrics) -> None:
        self.gate = Admission(limits, name="the gateway")
        self.metrics = metrics
        metrics.admission_inflight.set_function(lambda: self.gate.inflight)
        metrics.admission_queued.set_function(lambda: self.gate.queued)

    async def enter(self, org_id: str) -> None:
        """Admitted (call `leave` when done), or raises a 503 GatewayError."""
        if self.gate.try_enter(org_id):
            return
        try:
            await self.gate.enter(org_id)
        except Overloaded as exc:
            self.metrics.admission_refused.labels(exc.reason).inc()
            raise GatewayError(ErrorCode.UNAVAILABLE, exc.message, status=503, headers=RETRY_AFTER) from None

    def leave(self, org_id: str) -> None:
        self.gate.leave(org_id)
