"""OpenTelemetry tracing: one TracerProvider per process, W3C trace context in NATS headers.

Spans are recorded only when something reads them (an OTLP or console exporter, or
`capture_spans()` in tests). Otherwise they are non-recording: they still get ids and the
trace context still propagates gateway -> NATS -> service -> store, at a fraction of the
per-request cost.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, Sampler, SamplingResult
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from mcpmesh.telemetry.logs import bound_org

__all__ = [
    "ORG_ATTRIBUTE",
    "capture_spans",
    "exporters_from_env",
    "extract_context",
    "inject_headers",
    "setup_tracing",
    "tracer",
]

# Only W3C trace context crosses the bus (proto.headers TRACEPARENT/TRACESTATE); no baggage,
# so nothing a tenant puts in baggage rides along to other services.
_PROPAGATOR = TraceContextTextMapPropagator()
_lock = threading.Lock()
#: The span attribute naming the tenant a span worked for.
ORG_ATTRIBUTE = "mcpmesh.org_id"
_provider: TracerProvider | None = None


class _CaptureProcessor(SpanProcessor):
    """Forwards ended spans to the exporter handed out by the latest `capture_spans()`."""

    def __init__(self) -> None:
        self.exporter: InMemorySpanExporter | None = None

    def on_end(self, span: ReadableSpan) -> None:
        exporter = self.exporter
        if exporter is not None:
            exporter.export((span,))


class _TenantAttribute(SpanProcessor):
    """Puts the request's org (bound with `bind_request(org_id=...)`) on every recorded span as
    `mcpmesh.org_id`, so spans in the gateway, the kit, jobs and tool code all carry the tenant.
    Non-recording spans never reach a processor: this costs nothing when nobody reads spans."""

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        org = bound_org()
        if org is not None:
            span.set_attribute(ORG_ATTRIBUTE, org)


_capture = _CaptureProcessor()
_recording = False  # True once an exporter is installed or capture_spans() was called


class _RecordWhenRead(Sampler):
    """Record every span when someone reads spans, none otherwise (ids and propagation stay)."""

    def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
        return (ALWAYS_ON if _recording else ALWAYS_OFF).should_sample(*args, **kwargs)

    def get_description(self) -> str:
        return "RecordWhenRead"


class _HeaderGetter(Getter[Mapping[str, str]]):
    """Exact key first, then case-insensitive: some transports capitalise header names."""

    def get(self, carrier: Mapping[str, str], key: str) -> list[str] | None:
        value = carrier.get(key)
        if value is None:
            lowered = key.lower()
            value = next((v for k, v in carrier.items() if k.lower() == lowered), None)
        return None if value is None else [value]

    def keys(self, carrier: Mapping[str, str]) -> list[str]:
        return list(carrier.keys())


_GETTER = _HeaderGetter()


def exporters_from_env() -> list[SpanExporter]:
    """The exporters `setup_tracing` installs, chosen from the environment.

    OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `..._TRACES_ENDPOINT`) is set; the exporter
    reads its endpoint, headers, timeout etc. from the standard OTEL_* variables. Console (on
    stderr: stdout is the MCP stdio channel) when `MCPMESH_TRACE_CONSOLE=1`.
    """
    exporters: list[SpanExporter] = []
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporters.append(OTLPSpanExporter())
    if os.environ.get("MCPMESH_TRACE_CONSOLE") == "1":
        exporters.append(ConsoleSpanExporter(out=sys.stderr))
    return exporters


def _install(provider: TracerProvider, processors: Iterable[SpanProcessor]) -> None:
    provider.add_span_processor(_TenantAttribute())
    for processor in processors:
        provider.add_span_processor(processor)
    provider.add_span_processor(_capture)


def setup_tracing(service: str) -> None:
    """Install the process TracerProvider (resource `service.name`). Later calls are no-ops.

    If another SDK TracerProvider is already global (e.g. auto-instrumentation), it is kept.
    """
    global _provider
    with _lock:
        if _provider is not None:
            return
        current = trace.get_tracer_provider()
        if isinstance(current, TracerProvider):
            _provider = current
            _install(current, ())
            return
        global _recording
        provider = TracerProvider(
            resource=Resource.create({"service.name": service, "service.namespace": "mcpmesh"}),
            sampler=_RecordWhenRead(),
        )
        exporters = exporters_from_env()
        _recording = _recording or bool(exporters)
        _install(provider, (BatchSpanProcessor(exporter) for exporter in exporters))
        trace.set_tracer_provider(provider)
        _provider = provider


def tracer(name: str = "mcpmesh") -> trace.Tracer:
    """A tracer from the global provider (a proxy until `setup_tracing` runs)."""
    return trace.get_tracer(name)


def inject_headers(headers: dict[str, str]) -> dict[str, str]:
    """Write `traceparent`/`tracestate` for the current span into `headers` (in place) and return it.

    Nothing is written when there is no valid current span.
    """
    _PROPAGATOR.inject(headers)
    return headers


def extract_context(headers: Mapping[str, str] | None) -> Context:
    """The remote parent context carried in `headers`; an empty context when there is none.

    Pass it as `context=` to `start_as_current_span`; an empty context makes a root span.
    """
    if not headers:
        return Context()
    return _PROPAGATOR.extract(headers, context=Context(), getter=_GETTER)


def capture_spans() -> InMemorySpanExporter:
    """For tests: a fresh in-memory exporter receiving every span ended from now on.

    Sets up tracing (service "mcpmesh-test") if nobody has; a later call replaces the
    previous exporter, which then stops receiving spans.
    """
    if _provider is None:
        setup_tracing(os.environ.get("OTEL_SERVICE_NAME", "mcpmesh-test"))
    global _recording
    exporter = InMemorySpanExporter()
    _capture.exporter = exporter
    _recording = True
    return exporter
