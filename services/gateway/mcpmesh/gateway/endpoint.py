"""The MCP endpoints `/mcp` and `/mcp/<service>`: both protocol revisions, over aiohttp.

Per request, in order: Origin (403), declared body size (413), API key (401), body (413),
parse (400/405/406/415), admission (503, see admission.py), legacy session (404), limits
(429), route. Every answer is a JSON-RPC message with the right HTTP status, a span, one log
line and metrics; an error reply carries the request's id whenever it could be read. In a
2025-11-25 session a JSON-RPC error travels with HTTP 200 (what mcp 1.x clients expect: any
other status drops their connection); only what the spec puts at HTTP level stays there: 401
(key), 403 (Origin), 404 (unknown session), 400/405/406/415/413 (malformed request). The
2026-07-28 revision maps each error to its status (errors.HTTP_STATUS); a valid key's use (allowed or refused) goes to the control plane's audit
via `note_key_use`, except a request shed at admission (counted only).

A `notifications/cancelled` (either revision) and a client closing its connection while a
`tools/call` runs both stop the call at the service (see `gateway.cancel`); the request is
then logged as `cancelled` (HTTP 499 when the client went away).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any

import mcp_types as types
import nats.errors
from aiohttp import ClientConnectionResetError, web
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from pydantic import ValidationError

from mcpmesh.gateway.auth import presented_key, unauthorized
from mcpmesh.gateway.cancel import forward_cancellation
from mcpmesh.gateway.control.principal import AuthFailed, Principal
from mcpmesh.gateway.errors import GatewayError, error_reply, invalid_params
from mcpmesh.gateway.router import Call, negotiate
from mcpmesh.gateway.sessions import InvalidSession, SessionClaims
from mcpmesh.gateway.state import STATE, GatewayState
from mcpmesh.gateway.wire import (
    SESSION_HEADER,
    Acknowledge,
    EndSession,
    McpRequest,
    OpenStream,
    Rejection,
    client_request,
    origin_allowed,
    parse_request,
    wants_event_stream,
)
from mcpmesh.proto.errors import ErrorCode, MeshException
from mcpmesh.telemetry.logs import bind_request, get_logger, update_request
from mcpmesh.telemetry.tracing import ORG_ATTRIBUTE, extract_context, tracer

log = get_logger("mcpmesh.gateway")
_tracer = tracer("mcpmesh.gateway")  # a proxy until tracing is set up; resolving it per request costs

_JSON = "application/json"


@dataclass
class _Outcome:
    """What one request amounted to, for metrics, the log line and the audit."""

    method: str = "-"
    service: str = "gateway"
    tool: str = ""
    status: str = "ok"
    http_status: int = 200
    principal: Principal | None = None
    auth_reason: str | None = None
    limit: str | None = None
    upstream_s: float | None = None
    shed: bool = False  # refused at admission (503)


def _json_response(body: bytes, status: int, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=body, status=status, content_type=_JSON, headers=headers)


def _error_response(error: GatewayError, rpc_id: Any = None) -> web.Response:
    return _json_response(error_reply(rpc_id, error), error.status, error.headers)


def _session_gone(why: str) -> GatewayError:
    return GatewayError(
        ErrorCode.NOT_FOUND, f"session not found: {why}; initialize a new session", status=404
    )


async def handle(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    started = time.perf_counter()
    request_id = uuid.uuid4().hex
    outcome = _Outcome(method=request.method)
    service = request.match_info.get("service")
    route = "/mcp/{service}" if service is not None else "/mcp"
    with (
        bind_request(request_id=request_id, org_id="-"),
        _tracer.start_as_current_span(
            f"gateway {request.method} {route}",
            context=extract_context(request.headers),
            kind=SpanKind.SERVER,
        ) as span,
    ):
        response: web.StreamResponse
        try:
            if request.method == "OPTIONS":
                response = _preflight(state, request)
            else:
                response = await _serve(state, request, service, request_id, outcome, span)
        except GatewayError as exc:
            outcome.status = exc.code.value
            response = _error_response(exc)
        except asyncio.CancelledError:
            outcome.status = "cancelled"
            outcome.http_status = 499
            await _account(state, outcome, started, request_id, span)
            raise
        except Exception:
            log.exception("request failed inside the gateway")
            outcome.status = ErrorCode.INTERNAL.value
            response = _error_response(
                GatewayError(
                    ErrorCode.INTERNAL,
                    f"internal gateway error: the failure was logged under request id {request_id}",
                    status=500,
                )
            )
        outcome.http_status = response.status
        if not response.prepared:  # the event stream set its headers before it started
            response.headers.update(_response_headers(state, request, request_id))
        await _account(state, outcome, started, request_id, span)
        return response


async def _serve(
    state: GatewayState,
    request: web.Request,
    service: str | None,
    request_id: str,
    outcome: _Outcome,
    span: Span,
) -> web.StreamResponse:
    settings = state.settings
    headers = request.headers
    if not origin_allowed(headers.get("origin"), settings.allowed_origins):
        raise GatewayError(
            ErrorCode.FORBIDDEN,
            "this Origin is not allowed to call the gateway (MCPMESH_ALLOWED_ORIGINS)",
            status=403,
        )
    if request.content_length is not None and request.content_length > settings.max_body_bytes:
        raise _too_large(settings.max_body_bytes)
    try:
        raw_key = presented_key(headers)
        if raw_key is None:
            raise AuthFailed("missing")
        principal = await state.control.authenticate(raw_key)
    except AuthFailed as exc:
        outcome.auth_reason = exc.reason
        raise unauthorized(exc, state.base_url(request)) from None
    except MeshException as exc:  # the key store is down: an outage, not a bad key
        log.warning("API key check unavailable", error=exc.error.message)
        raise GatewayError(
            ErrorCode.UNAVAILABLE,
            "the gateway cannot check API keys right now: retry shortly",
            headers={"Retry-After": "1"},
        ) from None
    outcome.principal = principal
    update_request(org_id=principal.org_id)  # on every log line and span from here on
    span.set_attribute(ORG_ATTRIBUTE, principal.org_id)
    try:
        body = await request.read() if request.method == "POST" else b""
    except web.HTTPRequestEntityTooLarge:
        raise _too_large(settings.max_body_bytes) from None
    parsed = parse_request(
        request.method,
        service,
        headers,
        body,
        allowed_origins=settings.allowed_origins,
        header_items=headers.items(),
    )
    if isinstance(parsed, Rejection):
        outcome.status = parsed.error.code.value
        return _json_response(error_reply(parsed.rpc_id, parsed.error), parsed.status, dict(parsed.headers))
    if isinstance(parsed, Acknowledge):
        outcome.method = parsed.method or "response"
        session = None
        if parsed.session_id is not None:
            session = await _session(state, parsed.session_id, principal, service, None)
        if parsed.cancelled is not None:
            name = client_request(session.sid if session else None, parsed.cancelled)
            await forward_cancellation(state, principal, service, name)
        return web.Response(status=202)
    if isinstance(parsed, OpenStream):
        outcome.method = "GET stream"
        claims = await _session(state, parsed.session_id, principal, service, parsed.protocol_version)
        return await _stream(state, request, claims, parsed.session_id, request_id)
    if isinstance(parsed, EndSession):
        outcome.method = "DELETE session"
        claims = await _session(state, parsed.session_id, principal, service, parsed.protocol_version)
        try:
            await state.ended.end(claims)
        except _BUS_ERRORS as exc:
            raise _sessions_unavailable(exc) from None
        log.info("session ended", session=claims.sid)
        return web.Response(status=200)
    try:
        await state.admission.enter(principal.org_id)
    except GatewayError as exc:  # shed: the cheapest answer, neither logged nor audited one by one
        outcome.method, outcome.status, outcome.shed = parsed.method, exc.code.value, True
        return _json_response(error_reply(parsed.rpc_id, exc), _status(parsed, exc.status), exc.headers)
    try:
        return await _call(state, request, parsed, principal, body, request_id, outcome, span)
    except GatewayError as exc:  # the session (404) or initialize's params (400): HTTP-level
        outcome.status = exc.code.value
        return _error_response(exc, parsed.rpc_id)
    finally:
        state.admission.leave(principal.org_id)


async def _call(
    state: GatewayState,
    http: web.Request,
    req: McpRequest,
    principal: Principal,
    body: bytes,
    request_id: str,
    outcome: _Outcome,
    span: Span,
) -> web.StreamResponse:
    outcome.method = req.method
    span.set_attribute("mcp.method", req.method)
    claims: SessionClaims | None = None
    if req.era == "legacy":
        if req.method == "initialize":
            try:
                init = types.InitializeRequestParams.model_validate(req.params, by_name=False)
            except ValidationError:
                raise invalid_params(
                    "initialize needs params.protocolVersion, params.capabilities and params.clientInfo"
                ) from None
            version = negotiate(init.protocol_version)
            client_info: Any = req.params.get("clientInfo")
            capabilities: Any = req.params.get("capabilities")
        else:
            assert req.session_id is not None
            claims = await _session(state, req.session_id, principal, req.service, req.protocol_version)
            version, client_info, capabilities = claims.pv, claims.ci, claims.cc
    else:
        assert req.protocol_version is not None
        version, client_info, capabilities = req.protocol_version, req.client_info, req.client_capabilities
    call = Call(
        request=req,
        principal=principal,
        request_id=request_id,
        protocol_version=version,
        client_info=client_info,
        client_capabilities=capabilities,
        body=body,
        client_request=client_request(claims.sid if claims else None, req.rpc_id),
    )
    stream: _EventStream | None = None
    if wants_event_stream(req):
        stream_headers = _response_headers(state, http, request_id)
        if claims is not None:
            stream_headers[SESSION_HEADER] = req.session_id or ""
        stream = _EventStream(http, stream_headers)
        call.on_progress = stream.progress
    try:
        await state.limiter.admit(
            principal.org_id, principal.key_id, principal.settings, tool_call=req.method == "tools/call"
        )
        if req.method == "tools/call":  # a client gone mid-call cancels it (see gateway.cancel)
            with state.disconnects.watching(http):
                reply = await state.router.dispatch(call)
        else:
            reply = await state.router.dispatch(call)
    except GatewayError as exc:
        outcome.service, outcome.tool = call.service_label, call.tool_label
        if exc.status == 429:
            outcome.limit = str(exc.extra.get("limit", "rate"))
        outcome.status = exc.code.value
        if stream is not None and stream.response is not None:  # the stream is open: the error ends it
            return await stream.finish(error_reply(req.rpc_id, exc))
        return _json_response(error_reply(req.rpc_id, exc), _status(req, exc.status), exc.headers)
    except Exception:
        if stream is None or stream.response is None:
            raise  # answered by `handle`, as any failure inside the gateway
        log.exception("request failed inside the gateway")
        outcome.status = ErrorCode.INTERNAL.value
        failure = GatewayError(
            ErrorCode.INTERNAL,
            f"internal gateway error: the failure was logged under request id {request_id}",
            status=500,
        )
        return await stream.finish(error_reply(req.rpc_id, failure))
    outcome.service, outcome.tool, outcome.status = call.service_label, call.tool_label, reply.outcome
    outcome.upstream_s = call.upstream_s or None
    if stream is not None and stream.response is not None:
        return await stream.finish(reply.body)
    headers = dict(reply.headers)
    if req.era == "legacy" and req.method == "initialize" and reply.status == 200:
        token, _claims = state.sessions.issue(
            org_id=principal.org_id,
            key_id=principal.key_id,
            service=req.service,
            protocol_version=version,
            client_info=client_info,
            capabilities=capabilities,
        )
        headers["Mcp-Session-Id"] = token
        state.metrics.sessions_opened.inc()
    elif claims is not None:
        headers["Mcp-Session-Id"] = req.session_id or ""
    return _json_response(reply.body, _status(req, reply.status), headers)


def _status(req: McpRequest, status: int) -> int:
    """The HTTP status of a routed request's answer: always 200 in a 2025-11-25 session (its
    JSON-RPC errors travel in the body; see the module docstring)."""
    return 200 if req.era == "legacy" else status


class _EventStream:
    """A POST answered as SSE (`wire.wants_event_stream`): opened at the first progress
    notification the service sends, each one an event, then the reply as the last event.
    A call that sends none is answered with plain JSON. A client gone mid-stream has its call
    cancelled (`gateway.cancel.DisconnectWatch`); events that could not be written are dropped."""

    def __init__(self, request: web.Request, headers: dict[str, str]) -> None:
        self.request = request
        self.headers = headers
        self.response: web.StreamResponse | None = None
        self.gone = False

    async def progress(self, notification: bytes) -> None:
        if self.gone:
            return
        try:
            if self.response is None:
                self.response = web.StreamResponse(
                    status=200,
                    headers={
                        "Content-Type": "text/event-stream",
                        "Cache-Control": "no-cache, no-transform",
                        "X-Accel-Buffering": "no",
                        **self.headers,
                    },
                )
                await self.response.prepare(self.request)
            await self.response.write(_sse_event(notification))
        except (ConnectionResetError, ClientConnectionResetError):
            self.gone = True

    async def finish(self, body: bytes) -> web.StreamResponse:
        assert self.response is not None
        if not self.gone:
            try:
                await self.response.write(_sse_event(body))
                await self.response.write_eof()
            except (ConnectionResetError, ClientConnectionResetError):
                self.gone = True
        return self.response


def _sse_event(message: bytes) -> bytes:
    """One SSE `message` event carrying one JSON-RPC message (compact JSON: no newlines)."""
    return b"event: message\ndata: " + message + b"\n\n"


async def _session(
    state: GatewayState, token: str, principal: Principal, service: str | None, header_version: str | None
) -> SessionClaims:
    try:
        claims = state.sessions.open(token)
    except InvalidSession as exc:
        raise _session_gone(str(exc)) from None
    if claims.key != principal.key_id or claims.org != principal.org_id:
        raise _session_gone("it was opened with another API key")
    if claims.svc != (service or ""):
        raise _session_gone("it belongs to another endpoint")
    if header_version is not None and header_version != claims.pv:
        raise GatewayError.protocol(
            -32600,
            f"MCP-Protocol-Version {header_version!r} does not match the session's negotiated {claims.pv!r}",
        )
    try:
        ended = await state.ended.is_ended(claims)
    except _BUS_ERRORS as exc:
        raise _sessions_unavailable(exc) from None
    if ended:
        raise _session_gone("the client ended it")
    return claims


async def _stream(
    state: GatewayState, request: web.Request, claims: SessionClaims, token: str, request_id: str
) -> web.StreamResponse:
    """The legacy GET stream: open, keep-alive comments, nothing else (the bus pushes nothing)."""
    response = web.StreamResponse(
        status=200,
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache, no-transform",
            "X-Accel-Buffering": "no",
            SESSION_HEADER: token,
            **_response_headers(state, request, request_id),
        },
    )
    await response.prepare(request)
    state.metrics.streams.inc()
    try:
        await response.write(b": mcpmesh stream open\n\n")
        while not state.closing.is_set():
            try:
                await asyncio.wait_for(state.closing.wait(), timeout=state.settings.sse_ping_s)
                break
            except TimeoutError:
                pass
            try:
                if await state.ended.is_ended(claims) or claims.exp < time.time():
                    break
            except _BUS_ERRORS:
                pass  # keep the stream; the check runs again at the next ping
            await response.write(b": ping\n\n")
    except ConnectionResetError:
        pass  # the client went away
    finally:
        state.metrics.streams.dec()
    return response


_BUS_ERRORS = (nats.errors.Error, TimeoutError, OSError)

#: What a browser client (e.g. the MCP Inspector) may send and read, for allowed origins.
_CORS_ALLOW_HEADERS = (
    "accept, authorization, content-type, last-event-id, mcp-method, mcp-name, "
    "mcp-protocol-version, mcp-session-id, x-api-key, traceparent, tracestate"
)
_CORS_EXPOSE_HEADERS = "mcp-session-id, www-authenticate, retry-after, x-request-id"


def _response_headers(state: GatewayState, request: web.Request, request_id: str) -> dict[str, str]:
    headers = {"X-Request-Id": request_id}
    origin = request.headers.get("origin")
    if origin is not None and origin_allowed(origin, state.settings.allowed_origins):
        headers["Access-Control-Allow-Origin"] = origin
        headers["Access-Control-Expose-Headers"] = _CORS_EXPOSE_HEADERS
        headers["Vary"] = "Origin"
    return headers


def _preflight(state: GatewayState, request: web.Request) -> web.Response:
    """CORS preflight: allowed origins may POST/GET/DELETE with the MCP headers (no key needed)."""
    origin = request.headers.get("origin")
    if origin is None or not origin_allowed(origin, state.settings.allowed_origins):
        raise GatewayError(
            ErrorCode.FORBIDDEN,
            "this Origin is not allowed to call the gateway (MCPMESH_ALLOWED_ORIGINS)",
            status=403,
        )
    requested = request.headers.get("access-control-request-headers", "")
    params = [h.strip() for h in requested.split(",") if h.strip().lower().startswith("mcp-param-")]
    return web.Response(
        status=204,
        headers={
            "Access-Control-Allow-Methods": "GET, POST, DELETE",
            "Access-Control-Allow-Headers": ", ".join([_CORS_ALLOW_HEADERS, *params]),
            "Access-Control-Max-Age": "600",
        },
    )


def _sessions_unavailable(exc: BaseException) -> GatewayError:
    log.warning("session store unavailable", error=repr(exc))
    return GatewayError(
        ErrorCode.UNAVAILABLE,
        "sessions cannot be checked right now (the bus is unavailable): retry shortly",
        headers={"Retry-After": "1"},
    )


def _too_large(limit: int) -> GatewayError:
    return GatewayError(
        ErrorCode.INVALID_REQUEST,
        f"the request body is larger than the gateway accepts ({limit} bytes, MCPMESH_MAX_BODY_BYTES)",
        status=413,
    )


async def _account(
    state: GatewayState, outcome: _Outcome, started: float, request_id: str, span: Span
) -> None:
    seconds = time.perf_counter() - started
    metrics = state.metrics
    principal = outcome.principal
    org = principal.org_id if principal is not None else "-"
    if outcome.auth_reason is not None:
        metrics.auth_failures.labels(outcome.auth_reason).inc()
    if outcome.limit is not None and principal is not None:
        metrics.observe_rate_limited(org, outcome.limit)
    metrics.observe(
        outcome.service, outcome.tool or outcome.method, org, outcome.status, outcome.http_status, seconds
    )
    span.set_attribute("http.response.status_code", outcome.http_status)
    span.set_attribute("mcpmesh.service", outcome.service)
    if outcome.tool:
        span.set_attribute("mcpmesh.tool", outcome.tool)
    if outcome.status not in ("ok", "tool_error"):
        span.set_status(Status(StatusCode.ERROR, outcome.status))
    if outcome.shed:
        return
    log.info(
        "mcp request",
        method=outcome.method,
        org_id=org,
        key_id=principal.key_id if principal is not None else None,
        target=outcome.service,
        tool=outcome.tool or None,
        status=outcome.status,
        http_status=outcome.http_status,
        latency_ms=round(seconds * 1000, 2),
        upstream_ms=round(outcome.upstream_s * 1000, 2) if outcome.upstream_s else None,
    )
    if principal is not None:
        action = outcome.method
        if outcome.tool and outcome.tool != outcome.method:
            action = f"{outcome.method} {outcome.service}_{outcome.tool}"
        try:  # queued by the control plane: no I/O on this path
            await state.control.note_key_use(
                principal, action=action, outcome=outcome.status, request_id=request_id
            )
        except Exception as exc:  # auditing must never fail the request it records
            log.warning("key use not recorded", error=repr(exc))
