"""structlog set up for the platform: JSON lines in production, a readable console in dev.

Both structlog loggers and stdlib `logging` (libraries) go through one stdlib handler whose
`ProcessorFormatter` renders them the same way, so every line carries `service`, the
request fields bound with `bind_request`, and the current trace/span ids.
Logs go to stderr: stdout is the MCP protocol channel when a service runs over stdio.
"""

from __future__ import annotations

import logging
import os
import sys
from contextlib import AbstractContextManager
from typing import TextIO

import structlog
from opentelemetry import trace
from structlog.typing import EventDict, Processor, WrappedLogger

__all__ = ["bind_request", "bound_org", "configure_logging", "get_logger", "update_request"]

_DEV_ENVS = frozenset({"dev", "test"})
# Chatty at INFO; kept at WARNING unless LOG_LEVEL is DEBUG.
_NOISY_LOGGERS = ("httpx", "httpcore", "urllib3", "pymongo", "LiteLLM", "LiteLLM Router", "LiteLLM Proxy")

_service: str | None = None
_structlog_ready = False


class _StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever `sys.stderr` is at emit time (so test capture and redirection work)."""

    _mcpmesh = True

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


def _add_service(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    if _service is not None:
        event_dict.setdefault("service", _service)
    return event_dict


def _add_trace_ids(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """Correlate log lines with the OpenTelemetry span they were written in."""
    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid:
        event_dict.setdefault("trace_id", trace.format_trace_id(ctx.trace_id))
        event_dict.setdefault("span_id", trace.format_span_id(ctx.span_id))
    return event_dict


def _enrich_chain() -> list[Processor]:
    """Processors shared by structlog entries and foreign (stdlib) records."""
    return [
        structlog.contextvars.merge_contextvars,
        _add_service,
        _add_trace_ids,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def _ensure_structlog() -> None:
    """Point structlog at stdlib logging (never stdout), even before `configure_logging`.

    The structlog side never changes afterwards; rendering lives in the handler's formatter.
    Loggers are not cached, so a later `structlog.configure` (e.g. in a test) is honoured.
    """
    global _structlog_ready
    if _structlog_ready:
        return
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_enrich_chain(),
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        context_class=dict,
        cache_logger_on_first_use=False,
    )
    _structlog_ready = True


def _wants_json() -> bool:
    return os.environ.get("MCPMESH_ENV", "").strip().lower() not in _DEV_ENVS


def _parse_level(level: str) -> int:
    value = logging.getLevelNamesMapping().get(level.strip().upper())
    if value is None:
        raise ValueError(f"invalid log level {level!r}: use DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return value


def _renderers(json: bool) -> list[Processor]:
    if json:
        return [
            # Structured exception field; locals off so secrets in frames never reach the logs.
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            ),
            structlog.processors.JSONRenderer(),
        ]
    return [structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())]


_BASIC_HANDLERS = (logging.StreamHandler,)


def configure_logging(service: str, *, json: bool | None = None, level: str | None = None) -> None:
    """Configure structlog and stdlib logging for this process.

    `json` defaults to True unless `MCPMESH_ENV` is "dev" or "test"; `level` defaults to
    `LOG_LEVEL` (INFO). Safe to call again: the handler is replaced, never duplicated.
    """
    global _service
    numeric_level = _parse_level(level if level is not None else os.environ.get("LOG_LEVEL", "INFO"))
    use_json = _wants_json() if json is None else json

    _ensure_structlog()
    _service = service

    handler = _StderrHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*_enrich_chain(), structlog.stdlib.ExtraAdder()],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *_renderers(use_json)],
        )
    )
    root = logging.getLogger()
    # This process's logging belongs to us: drop our previous handler and any plain handler a
    # library installed with logging.basicConfig (the mcp SDK's MCPServer does), which would
    # print every line a second time in another format.
    for old in [h for h in root.handlers if getattr(h, "_mcpmesh", False) or type(h) in _BASIC_HANDLERS]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(numeric_level)
    noisy_level = logging.NOTSET if numeric_level <= logging.DEBUG else max(numeric_level, logging.WARNING)
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(noisy_level)


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    """A logger (lazy proxy) named `name`, or after the calling module when None."""
    _ensure_structlog()
    if name is None:
        return structlog.stdlib.get_logger()
    return structlog.stdlib.get_logger(name)


def bind_request(**values: object) -> AbstractContextManager[None]:
    """Bind e.g. `org_id`, `request_id`, `tool` to every log line inside the `with` block.

    Uses contextvars, so each asyncio task sees only its own bindings (tasks copy the
    context when created); previous values are restored on exit.
    """
    return structlog.contextvars.bound_contextvars(**values)


def update_request(**values: object) -> None:
    """Change values an enclosing `bind_request` bound, e.g. `org_id` once the caller is known.

    Bind the key in the enclosing block first (`bind_request(org_id="-")`): its exit then
    restores the value from before the block, so the change never outlives the request.
    """
    structlog.contextvars.bind_contextvars(**values)


def bound_org() -> str | None:
    """The `org_id` bound for the current request, if any (spans take it from here)."""
    value = structlog.contextvars.get_contextvars().get("org_id")
    return value if isinstance(value, str) else None
