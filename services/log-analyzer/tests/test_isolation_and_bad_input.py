"""Org B never reaches org A's sources, analyses or jobs; SAS URLs never come back; bad input
(malformed lines, wrong or expired SAS, empty container, empty range, non-log blobs) gives a
clear result or error, never a crash."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from mcpmesh.logs.demo import DemoSpec, hourly_blobs
from mcpmesh.logs.testing import ORG_A, ORG_B, Logs
from mcpmesh.service.testing import ToolFailed, internals_in, logged_failures

SMALL = DemoSpec(hours=2, per_minute=5, burst=None)


async def failure(logs: Logs, org: str, tool: str, args: dict[str, object]) -> tuple[str, str]:
    """(code, message) of a tool call that must fail."""
    with pytest.raises(ToolFailed) as failed:
        await logs.call(org, tool, args)
    error = failed.value.error
    assert error is not None
    assert not internals_in(error.message), error.message
    return str(error.code), error.message


async def test_org_b_cannot_reach_org_a_sources_analyses_or_jobs(
    logs: Logs, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    container = logs.container(hourly_blobs(SMALL))
    url = logs.azurite.container_sas_url(container)
    signature = parse_qs(urlsplit(url).query)["sig"][0]
    source = await logs.call(ORG_A, "source_add", {"name": "prod", "sas_url": url})
    started = await logs.call(ORG_A, "analyze_source", {"source_id": source["source_id"]})
    view = await logs.finish(ORG_A, started["job_id"])
    assert view["status"] == "succeeded"
    result = await logs.call(ORG_A, "job_result", {"job_id": started["job_id"]})
    analysis_id = result["analysis_id"]

    assert (await logs.call(ORG_B, "sources", {}))["sources"] == []
    assert (await logs.call(ORG_B, "analyses", {}))["analyses"] == []
    assert (await logs.call(ORG_B, "jobs", {}))["jobs"] == []
    for tool, args in (
        ("analysis_get", {"analysis_id": analysis_id}),
        ("analysis_delete", {"analysis_id": analysis_id}),
        ("compare", {"baseline_id": analysis_id, "candidate_id": analysis_id}),
        ("source_remove", {"source_id": source["source_id"]}),
        ("job_status", {"job_id": started["job_id"]}),
        ("job_result", {"job_id": started["job_id"]}),
    ):
        code, _ = await failure(logs, ORG_B, tool, args)
        assert code == "not_found", tool
    # B's job on A's source id fails as if the source did not exist
    theirs = await logs.call(ORG_B, "analyze_source", {"source_id": source["source_id"]})
    view = await logs.finish(ORG_B, theirs["job_id"])
    assert view["status"] == "failed" and view["error"]["code"] == "not_found"
    # A's things are untouched, and the URL never came back to anyone nor reached a log line
    assert (await logs.call(ORG_A, "analysis_get", {"analysis_id": analysis_id}))[
        "analysis_id"
    ] == analysis_id
    assert len((await logs.call(ORG_A, "sources", {}))["sources"]) == 1
    seen = json.dumps(logs.seen)
    assert signature not in seen and url not in seen
    assert signature not in caplog.text
    assert logged_failures(caplog.records) == []


async def test_wrong_sas_fails_the_job_clearly(logs: Logs) -> None:
    container = logs.container(hourly_blobs(SMALL))
    forged = logs.azurite.container_sas_url(container, key="QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=")
    source = await logs.call(ORG_A, "source_add", {"name": "forged", "sas_url": forged})
    view, result = await logs.analyze_source(ORG_A, source["source_id"])
    assert result is None and view["status"] == "failed"
    assert view["error"]["code"] == "forbidden"
    assert "refused the source's SAS URL" in view["error"]["message"]
    assert parse_qs(urlsplit(forged).query)["sig"][0] not in json.dumps(view)


async def test_sas_urls_that_cannot_work_are_refused_when_added(logs: Logs) -> None:
    container = logs.container([])
    expired = logs.azurite.container_sas_url(container, expiry=datetime.now(UTC) - timedelta(hours=1))
    code, message = await failure(logs, ORG_A, "source_add", {"name": "old", "sas_url": expired})
    assert code == "invalid_request" and "expired" in message
    bare = logs.azurite.account_url + f"/{container}"
    code, message = await failure(logs, ORG_A, "source_add", {"name": "bare", "sas_url": bare})
    assert code == "invalid_request" and "no SAS token" in message
    code, message = await failure(logs, ORG_A, "source_add", {"name": "x", "sas_url": "ftp://host/c?sig=abc"})
    assert code == "invalid_request" and "container SAS URL" in message
    code, _ = await failure(logs, ORG_A, "source_add", {"name": "../etc", "sas_url": expired})
    assert code == "invalid_request"
    assert (await logs.call(ORG_A, "sources", {}))["sources"] == []


async def test_empty_container_and_empty_range_give_empty_reports(logs: Logs) -> None:
    empty = await logs.add_source(ORG_A, logs.container([]))
    view, result = await logs.analyze_source(ORG_A, empty["source_id"])
    assert view["status"] == "succeeded"
    assert result["report"]["requests"] == 0 and result["report"]["health"]["verdict"] == "no_data"
    assert result["report"]["blobs"]["read"] == 0
    full = await logs.add_source(ORG_A, logs.container(hourly_blobs(SMALL)))
    view, result = await logs.analyze_source(
        ORG_A, full["source_id"], since="2025-01-01T00:00:00Z", until="2025-01-02T00:00:00Z"
    )
    assert view["status"] == "succeeded" and result["report"]["blobs"]["read"] == 0
    # a job checks its arguments when it runs: it fails, saying what was wrong
    view, _ = await logs.analyze_source(
        ORG_A, full["source_id"], since="2026-12-01T00:00:00Z", until="2026-11-01"
    )
    assert view["status"] == "failed" and view["error"]["code"] == "invalid_request"
    assert "until must be later than since" in view["error"]["message"]


async def test_non_log_blobs_are_reported_not_fatal(logs: Logs) -> None:
    blobs = [
        *hourly_blobs(SMALL),
        ("README.txt", b"this container holds logs\nnothing else\n"),
        ("pic.png", bytes(range(256)) * 40),
    ]
    source = await logs.add_source(ORG_A, logs.container(blobs))
    view, result = await logs.analyze_source(ORG_A, source["source_id"])
    assert view["status"] == "succeeded"
    report = result["report"]
    assert sorted(report["blobs"]["not_log_blobs"]) == ["README.txt", "pic.png"]
    assert report["requests"] == 2 * 60 * SMALL.per_minute
    assert report["lines"]["malformed"] >= 3
    # with a time range, blobs outside the hourly layout are left out and counted
    view, ranged = await logs.analyze_source(
        ORG_A, source["source_id"], since="2026-11-30T09:00:00Z", until="2026-11-30T12:00:00Z"
    )
    assert ranged["report"]["blobs"]["outside_hourly_layout"] == 2
    assert ranged["report"]["lines"]["malformed"] == 0


async def test_bad_arguments_are_invalid_requests(logs: Logs) -> None:
    for tool, args in (
        ("analyze", {"lines": ["{}"], "since": "yesterday"}),
        ("analyze", {"lines": ["{}"], "top": 0}),
        ("analyze", {"lines": ["{}"], "since": "2026-11-30T10:00:00Z", "until": "2026-11-30T09:00:00Z"}),
        ("analysis_get", {"analysis_id": "../../x"}),
        ("source_remove", {"source_id": "src-nothex"}),
        ("analyses", {"limit": 1000}),
    ):
        code, _ = await failure(logs, ORG_A, tool, args)
        assert code == "invalid_request", (tool, args)
    code, message = await failure(logs, ORG_A, "analyze", {"lines": ["x" * 600_000]})
    assert code == "limit_exceeded" and "source_add" in message
    report = await logs.call(ORG_A, "analyze", {"lines": ["junk", "[1]", '{"time": "2026-11-30T10:00:00Z"}']})
    assert report["lines"]["malformed"] == 2 and report["lines"]["other"] == 1
    assert report["health"]["verdict"] == "no_data"
