"""Observability of a service on a real bus: org_id on log lines and spans, /metrics, nats.micro STATS."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from nats.micro.service import ServiceVerb, control_subject

from mcpmesh.dev.natsproc import LocalNatsServer
from mcpmesh.proto.errors import ErrorCode, MeshException
from mcpmesh.service import MeshService, ServiceSettings
from mcpmesh.service.testing import ServiceHarness, ToolFailed
from mcpmesh.telemetry import MetricsSettings, capture_spans, configure_logging, get_logger, tracer

log = get_logger("test.slow")


def slow_service() -> MeshService:
    svc = MeshService("slow")

    @svc.tool(access="read")
    async def nap(seconds: float) -> str:
        """Sleep, log a line and open a span of our own, then answer."""
        log.info("napping", seconds=seconds)
        with tracer().start_as_current_span("slow nap"):
            await asyncio.sleep(seconds)
        return "rested"

    @svc.tool(access="read")
    async def refuse() -> str:
        """Fail as a tool does."""
        raise MeshException(ErrorCode.INVALID_REQUEST, "no, thank you")

    return svc


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """configure_logging changes process-wide state; put it back for the other suites."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
    root.setLevel(level)
    structlog.contextvars.clear_contextvars()


async def stats(harness: ServiceHarness) -> dict[str, Any]:
    """The replica's STATS reply for the shared `mcp` endpoint, asked over the bus like the gateway does."""
    assert harness.client is not None and harness.server is not None and harness.server.micro is not None
    subject = control_subject(ServiceVerb.STATS, "slow", harness.server.micro.id)
    reply = json.loads((await harness.client.nc.request(subject, b"", timeout=5)).data)
    (endpoint,) = [e for e in reply["endpoints"] if e["name"] == "mcp"]
    return dict(endpoint)


async def test_micro_stats_time_the_handler_and_count_its_errors(nats_server: LocalNatsServer) -> None:
    async with ServiceHarness(slow_service(), nats_server) as harness:
        # Two calls at once: still served concurrently (each in its own task).
        results = await asyncio.gather(
            *(harness.call_tool("org-acme", "nap", {"seconds": 0.3}) for _ in range(2))
        )
        assert results == ["rested", "rested"]
        first = await stats(harness)
        assert (first["num_requests"], first["num_errors"]) == (2, 0)
        assert first["average_processing_time"] >= 300_000_000  # ns: the handler, not the task spawn
        assert first["processing_time"] >= 600_000_000

        with pytest.raises(ToolFailed, match="no, thank you"):
            await harness.call_tool("org-acme", "refuse")
        after = await stats(harness)
        assert (after["num_requests"], after["num_errors"]) == (3, 1)
        assert after["last_error"] == "invalid_request"  # the code the call ended with


async def test_log_lines_and_spans_of_a_call_carry_the_org(
    nats_server: LocalNatsServer, capsys: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    configure_logging("mcp-slow", json=True)
    spans = capture_spans()
    async with ServiceHarness(slow_service(), nats_server) as harness:
        await harness.call_tool("org-globex", "nap", {"seconds": 0.01})
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    by_event = {line["event"]: line for line in lines}
    assert by_event["napping"]["org_id"] == "org-globex"  # a line the tool wrote
    assert by_event["call"]["org_id"] == "org-globex"  # the kit's line for the call
    assert by_event["call"]["tool"] == "nap"
    finished = {span.name: span for span in spans.get_finished_spans()}
    assert finished["slow serve"].attributes["mcpmesh.org_id"] == "org-globex"
    assert finished["slow nap"].attributes["mcpmesh.org_id"] == "org-globex"  # a span the tool opened


async def test_a_service_serves_its_metrics_for_prometheus(nats_server: LocalNatsServer) -> None:
    settings = dataclasses.replace(ServiceSettings(), metrics=MetricsSettings(port=0, host="127.0.0.1"))
    async with ServiceHarness(slow_service(), nats_server, settings=settings) as harness:
        await harness.call_tool("org-acme", "nap", {"seconds": 0.01})
        assert harness.server is not None and harness.server.metrics_http is not None
        url = f"http://127.0.0.1:{harness.server.metrics_http.server_port}/metrics"
        with await asyncio.to_thread(urllib.request.urlopen, url, timeout=5) as response:
            status, body = response.status, response.read().decode()
    assert status == 200
    assert 'mcpmesh_tenant_requests_total{org_id="org-acme",service="slow"} 1.0' in body
    assert 'mcpmesh_requests_total{service="slow",status="ok",tool="nap"} 1.0' in body
    assert "process_cpu_seconds_total" in body
