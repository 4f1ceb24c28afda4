"""configure_logging / get_logger / bind_request: what actually reaches stderr."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
import structlog

from mcpmesh.telemetry import bind_request, capture_spans, configure_logging, get_logger, tracer


@pytest.fixture(autouse=True)
def restore_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """configure_logging changes process-wide state; put it back for the other suites."""
    monkeypatch.delenv("LOG_LEVEL", raising=False)
    monkeypatch.delenv("MCPMESH_ENV", raising=False)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    noisy = {name: logging.getLogger(name).level for name in ("httpx", "pymongo")}
    structlog.contextvars.clear_contextvars()
    yield
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
    root.setLevel(level)
    for name, noisy_level in noisy.items():
        logging.getLogger(name).setLevel(noisy_level)
    structlog.contextvars.clear_contextvars()


def json_lines(err: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in err.splitlines() if line.startswith("{")]


def test_json_line_carries_service_level_timestamp_and_fields(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("gateway", json=True)
    get_logger("mcpmesh.test").info("key_created", key_id="k1")

    captured = capsys.readouterr()
    assert captured.out == ""  # stdout is the MCP stdio channel
    (line,) = json_lines(captured.err)
    assert line["event"] == "key_created"
    assert line["key_id"] == "k1"
    assert line["service"] == "gateway"
    assert line["level"] == "info"
    assert line["logger"] == "mcpmesh.test"
    assert datetime.fromisoformat(line["timestamp"]).tzinfo is not None


def test_production_default_is_json_and_dev_is_console(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MCPMESH_ENV", "prod")
    configure_logging("svc")
    get_logger().warning("in_prod")
    assert json_lines(capsys.readouterr().err)[0]["event"] == "in_prod"

    monkeypatch.setenv("MCPMESH_ENV", "dev")
    configure_logging("svc")
    get_logger().warning("in_dev")
    err = capsys.readouterr().err
    assert "in_dev" in err
    assert json_lines(err) == []


def test_reconfiguring_replaces_the_handler(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("a", json=True)
    configure_logging("b", json=True)
    get_logger().info("once")
    lines = json_lines(capsys.readouterr().err)
    assert [line["service"] for line in lines] == ["b"]


def test_level_comes_from_env_and_argument(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOG_LEVEL", "warning")
    configure_logging("svc", json=True)
    log = get_logger()
    log.info("hidden")
    log.warning("shown")
    assert [line["event"] for line in json_lines(capsys.readouterr().err)] == ["shown"]

    configure_logging("svc", json=True, level="DEBUG")
    log.debug("debug_now")
    assert [line["event"] for line in json_lines(capsys.readouterr().err)] == ["debug_now"]


def test_invalid_level_is_rejected() -> None:
    with pytest.raises(ValueError, match="invalid log level"):
        configure_logging("svc", level="LOUD")


def test_noisy_libraries_stay_at_warning(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("svc", json=True, level="INFO")
    logging.getLogger("httpx").info("HTTP Request: GET ...")
    logging.getLogger("httpx").warning("retrying")
    assert [line["event"] for line in json_lines(capsys.readouterr().err)] == ["retrying"]


def test_stdlib_logging_is_rendered_with_bound_context(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("mcp-llm", json=True)
    with bind_request(org_id="org-acme", request_id="r-1"):
        logging.getLogger("some.library").warning("disk %s", "full", extra={"device": "sda"})

    (line,) = json_lines(capsys.readouterr().err)
    assert line["event"] == "disk full"
    assert line["logger"] == "some.library"
    assert line["level"] == "warning"
    assert line["device"] == "sda"
    assert (line["service"], line["org_id"], line["request_id"]) == ("mcp-llm", "org-acme", "r-1")


def test_bind_request_binds_for_the_block_and_restores(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("gateway", json=True)
    log = get_logger()
    with bind_request(org_id="org-acme", request_id="r-1"):
        with bind_request(tool="chat", request_id="r-2"):
            log.info("inner")
        log.info("outer")
    log.info("after")

    inner, outer, after = json_lines(capsys.readouterr().err)
    assert (inner["org_id"], inner["request_id"], inner["tool"]) == ("org-acme", "r-2", "chat")
    assert (outer["org_id"], outer["request_id"]) == ("org-acme", "r-1")
    assert "tool" not in outer
    assert not {"org_id", "request_id", "tool"} & after.keys()


async def test_bindings_do_not_leak_between_tasks(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("gateway", json=True)
    log = get_logger()
    both_bound = asyncio.Barrier(2)

    async def handle(org_id: str) -> None:
        with bind_request(org_id=org_id, request_id=f"req-{org_id}"):
            await both_bound.wait()  # both tasks are inside their `with` at once
            log.info("handled")

    await asyncio.gather(handle("org-one"), handle("org-two"))
    lines = json_lines(capsys.readouterr().err)
    assert sorted((line["org_id"], line["request_id"]) for line in lines) == [
        ("org-one", "req-org-one"),
        ("org-two", "req-org-two"),
    ]


def test_exception_is_a_structured_field_without_locals(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("svc", json=True)
    secret = "sk-should-not-be-logged"
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        get_logger().exception("tool_failed", length=len(secret))

    err = capsys.readouterr().err
    (line,) = json_lines(err)
    (exc,) = line["exception"]
    assert exc["exc_type"] == "RuntimeError"
    assert exc["exc_value"] == "boom"
    assert exc["frames"][-1]["name"] == "test_exception_is_a_structured_field_without_locals"
    assert secret not in err


def test_console_renderer_shows_exception(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("svc", json=False)
    try:
        raise KeyError("missing")
    except KeyError:
        get_logger().exception("lookup_failed")
    err = capsys.readouterr().err
    assert "lookup_failed" in err
    assert "KeyError" in err


def test_lines_written_inside_a_span_carry_its_ids(capsys: pytest.CaptureFixture[str]) -> None:
    capture_spans()
    configure_logging("svc", json=True)
    with tracer("test").start_as_current_span("work") as span:
        get_logger().info("inside")
    get_logger().info("outside")

    inside, outside = json_lines(capsys.readouterr().err)
    ctx = span.get_span_context()
    assert inside["trace_id"] == f"{ctx.trace_id:032x}"
    assert inside["span_id"] == f"{ctx.span_id:016x}"
    assert "trace_id" not in outside


def test_capture_logs_still_works_for_other_suites() -> None:
    """Other components' tests may assert on log events with structlog's own helper."""
    log = get_logger("mcpmesh.other")
    log.info("warm_up")
    with structlog.testing.capture_logs() as logs:
        log.info("captured", org_id="org-acme")
    assert logs == [{"event": "captured", "org_id": "org-acme", "log_level": "info"}]


def test_a_library_basicconfig_handler_does_not_duplicate_lines(capsys: pytest.CaptureFixture[str]) -> None:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(message)s")  # what the mcp SDK's MCPServer does
    configure_logging("dup-check", json=True, level="INFO")
    get_logger("dup").info("only once", marker="m-1")
    err = capsys.readouterr().err
    assert err.count("only once") == 1, err
