"""Trace context across the bus: inject into NATS-style headers, extract on the other side."""

from __future__ import annotations

import asyncio
import re
import sys

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter

from mcpmesh.proto.headers import TRACEPARENT
from mcpmesh.telemetry import capture_spans, extract_context, inject_headers, setup_tracing, tracer
from mcpmesh.telemetry.tracing import exporters_from_env

TRACEPARENT_RE = re.compile(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")


def test_child_span_from_headers_joins_the_callers_trace() -> None:
    spans = capture_spans()
    headers: dict[str, str] = {"Mcp-Request-Id": "r-1"}
    with tracer("gateway").start_as_current_span("tools/call") as caller:
        assert inject_headers(headers) is headers
    with tracer("service").start_as_current_span("handle", context=extract_context(headers)) as callee:
        pass

    assert TRACEPARENT_RE.match(headers[TRACEPARENT])
    assert headers["Mcp-Request-Id"] == "r-1"
    caller_ctx = caller.get_span_context()
    finished = {span.name: span for span in spans.get_finished_spans()}
    handle = finished["handle"]
    assert callee.get_span_context().trace_id == caller_ctx.trace_id
    assert handle.context is not None and handle.context.trace_id == caller_ctx.trace_id
    assert handle.parent is not None
    assert handle.parent.span_id == caller_ctx.span_id
    assert handle.parent.is_remote


async def test_context_crosses_tasks_through_headers() -> None:
    spans = capture_spans()
    queue: asyncio.Queue[dict[str, str]] = asyncio.Queue()

    async def service() -> None:
        headers = await queue.get()
        with tracer().start_as_current_span("serve", context=extract_context(headers)):
            pass

    server = asyncio.create_task(service())
    with tracer().start_as_current_span("request") as request:
        await queue.put(inject_headers({}))
    await server

    (serve,) = [span for span in spans.get_finished_spans() if span.name == "serve"]
    assert serve.parent is not None
    assert serve.parent.span_id == request.get_span_context().span_id


def test_tracestate_is_carried() -> None:
    spans = capture_spans()
    incoming = {
        TRACEPARENT: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "tracestate": "vendor=x",
    }
    with tracer().start_as_current_span("hop", context=extract_context(incoming)):
        outgoing = inject_headers({})
    assert outgoing["tracestate"] == "vendor=x"
    assert outgoing[TRACEPARENT].split("-")[1] == "0af7651916cd43dd8448eb211c80319c"
    assert spans.get_finished_spans()[0].parent is not None


def test_extract_is_case_insensitive_on_header_names() -> None:
    headers = {"Traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    parent = trace.get_current_span(extract_context(headers)).get_span_context()
    assert parent.trace_id == 0x0AF7651916CD43DD8448EB211C80319C
    assert parent.span_id == 0xB7AD6B7169203331


@pytest.mark.parametrize("headers", [None, {}, {"Mcp-Request-Id": "r-1"}, {TRACEPARENT: "garbage"}])
def test_no_usable_headers_means_a_root_span(headers: dict[str, str] | None) -> None:
    spans = capture_spans()
    assert not trace.get_current_span(extract_context(headers)).get_span_context().is_valid
    # An empty context, not the current one: the request starts its own trace.
    outer = tracer().start_as_current_span("outer")
    with outer, tracer().start_as_current_span("root", context=extract_context(headers)):
        pass
    root = next(span for span in spans.get_finished_spans() if span.name == "root")
    assert root.parent is None


def test_inject_without_a_span_writes_nothing() -> None:
    capture_spans()
    assert inject_headers({"Mcp-Stamp": "jwt"}) == {"Mcp-Stamp": "jwt"}


def test_setup_is_idempotent_and_names_the_service() -> None:
    setup_tracing("first")
    provider = trace.get_tracer_provider()
    setup_tracing("second")
    assert trace.get_tracer_provider() is provider
    assert isinstance(provider, TracerProvider)
    # capture_spans may have set it up first in this process under the test name.
    assert provider.resource.attributes["service.name"] in {"first", "mcpmesh-test"}
    assert provider.resource.attributes["service.namespace"] == "mcpmesh"


def test_capture_spans_hands_out_a_fresh_exporter() -> None:
    old = capture_spans()
    with tracer().start_as_current_span("a"):
        pass
    new = capture_spans()
    with tracer().start_as_current_span("b"):
        pass
    assert [span.name for span in old.get_finished_spans()] == ["a"]
    assert [span.name for span in new.get_finished_spans()] == ["b"]


def test_no_exporter_without_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "MCPMESH_TRACE_CONSOLE",
    ):
        monkeypatch.delenv(name, raising=False)
    assert exporters_from_env() == []


def test_otlp_exporter_when_endpoint_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    monkeypatch.delenv("MCPMESH_TRACE_CONSOLE", raising=False)
    (exporter,) = exporters_from_env()
    try:
        assert isinstance(exporter, OTLPSpanExporter)
        assert exporter._endpoint == "http://collector:4318/v1/traces"
    finally:
        exporter.shutdown()  # type: ignore[no-untyped-call]


def test_console_exporter_writes_to_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    monkeypatch.setenv("MCPMESH_TRACE_CONSOLE", "1")
    (exporter,) = exporters_from_env()
    assert isinstance(exporter, ConsoleSpanExporter)
    assert exporter.out is sys.stderr


def test_without_a_reader_spans_are_not_recorded_but_context_still_propagates() -> None:
    import mcpmesh.telemetry.tracing as tracing

    setup_tracing("sampler-check")
    saved = tracing._recording
    tracing._recording = False
    try:
        with tracer("t").start_as_current_span("unread") as span:
            assert not span.is_recording()
            headers = inject_headers({})
        parent = span.get_span_context()
        assert headers["traceparent"].split("-")[1] == format(parent.trace_id, "032x")
        with tracer("t").start_as_current_span("child", context=extract_context(headers)) as child:
            assert child.get_span_context().trace_id == parent.trace_id
    finally:
        tracing._recording = saved
