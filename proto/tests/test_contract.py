from __future__ import annotations

import msgspec
import pytest

from mcpmesh.proto import export, subjects
from mcpmesh.proto.errors import ErrorCode, MeshError, MeshException
from mcpmesh.proto.ids import InvalidIdentifier


def test_exported_schemas_match_the_code() -> None:
    """Fails when a bus type changed and `python -m mcpmesh.proto.export` was not re-run."""
    assert export.main(["--check"]) == 0


def test_asyncapi_document_names_every_subject_and_type() -> None:
    doc = export.asyncapi()
    assert doc["asyncapi"] == "3.0.0"
    addresses = {c["address"] for c in doc["channels"].values()}
    assert addresses == {
        "mcp.{org_id}.{service}",
        "mcp.{org_id}.{service}.{instance}",
        "mcp.{org_id}.{service}.cancel",
        "usage.{org_id}.{service}",
        "audit.{org_id}.{source}",
        subjects.KEY_EVENTS,
        "control.tenants.{action}.{service}",
        "control.stamps.{service}",
    }
    assert subjects.stamp_request_subject("debate") == "control.stamps.debate"
    assert subjects.service_of_stamp_request("control.stamps.debate") == "debate"
    with pytest.raises(InvalidIdentifier):
        subjects.service_of_stamp_request("control.stamps.debate.x")
    assert set(doc["components"]["schemas"]) >= {"UsageEvent", "AuditEvent", "RequestHeaders", "MeshError"}
    headers = doc["components"]["schemas"]["RequestHeaders"]["properties"]
    assert {"Mcp-Stamp", "Mcp-Request-Id", "Mcp-Deadline", "traceparent"} <= set(headers)


def test_subjects_are_built_only_from_valid_ids() -> None:
    assert subjects.service_subject("org-acme", "context") == "mcp.org-acme.context"
    assert subjects.org_of_service_subject("mcp.org-acme.context") == "org-acme"
    for bad in ("org-a.b", "org-*", "org->", "org-acme.>"):
        with pytest.raises(InvalidIdentifier):
            subjects.service_subject(bad, "context")
    with pytest.raises(InvalidIdentifier):
        subjects.service_subject("org-acme", "context.>")
    for bad in ("mcp.org-acme.context.one.two", "mcp.org-acme.context.a-b", "mcp.org-acme.context."):
        with pytest.raises(InvalidIdentifier):
            subjects.org_of_service_subject(bad)


def test_replica_subjects_carry_the_org_and_a_valid_replica_id() -> None:
    subject = subjects.instance_subject("org-acme", "context", "ABCdef123")
    assert subject == "mcp.org-acme.context.ABCdef123"
    assert subjects.org_of_service_subject(subject) == "org-acme"
    assert subjects.instance_queue_subject("context", "ABCdef123") == "mcp.*.context.ABCdef123"
    assert subjects.service_request_subjects("context") == ["mcp.*.context", "mcp.*.context.*"]
    assert subjects.cancel_subject("org-acme", "context") == "mcp.org-acme.context.cancel"
    assert subjects.cancel_queue_subject("context") == "mcp.*.context.cancel"
    for bad in ("a.b", "*", ">", "", "x" * 65, "a-b"):
        with pytest.raises(InvalidIdentifier):
            subjects.instance_subject("org-acme", "context", bad)


def test_errors_round_trip_and_know_what_is_retryable() -> None:
    exc = MeshException(ErrorCode.UNAVAILABLE, "down")
    decoded = msgspec.json.decode(msgspec.json.encode(exc.error), type=MeshError)
    assert decoded == exc.error and decoded.retryable
    assert not MeshException(ErrorCode.FORBIDDEN, "no").error.retryable


def test_retryable_can_be_overridden_per_error() -> None:
    applied = MeshException(ErrorCode.TIMEOUT, "may have been applied", retryable=False)
    assert applied.error.code is ErrorCode.TIMEOUT and applied.error.retryable is False
    decoded = msgspec.json.decode(msgspec.json.encode(applied.error), type=MeshError)
    assert decoded.retryable is False
    assert MeshException(ErrorCode.CONFLICT, "same key, done", retryable=True).error.retryable


def test_subject_parsers_accept_only_their_own_shape() -> None:
    assert subjects.org_and_name("usage.org-acme.context", "usage") == ("org-acme", "context")
    assert subjects.tenant_action_of(subjects.tenant_control_subject("export", "rag")) == "export"
    for bad, prefix in (
        ("audit.org-acme.gateway", "usage"),
        ("usage.ORG.context", "usage"),
        ("usage.x", "usage"),
    ):
        with pytest.raises(InvalidIdentifier):
            subjects.org_and_name(bad, prefix)
    with pytest.raises(InvalidIdentifier):
        subjects.tenant_action_of("control.tenants.drop.rag")
    assert subjects.service_event_patterns("rag") == ["usage.*.rag", "audit.*.rag"]


def test_bus_users_and_their_inboxes() -> None:
    assert subjects.inbox_prefix("gateway") == "_INBOX_gateway"
    assert subjects.inbox_prefix(subjects.service_user("context")) == "_INBOX_svc_context"
    assert (
        subjects.inbox_prefix("org-acme-2") == subjects.org_inbox_prefix("org-acme-2") == "_INBOX_org_acme_2"
    )
    assert subjects.service_of_user("svc-rag") == "rag" and subjects.service_of_user("org-acme") is None
    for bad in ("admin", "svc-X", "svc-", "org-a", "org-acme.>", "gateway.*", "_INBOX"):
        with pytest.raises(InvalidIdentifier):
            subjects.inbox_prefix(bad)
    assert subjects.micro_patterns("llm")[:3] == ["$SRV.PING", "$SRV.PING.llm", "$SRV.PING.llm.*"]
    assert subjects.kv_read_patterns("ORG_SETTINGS")[0] == "$JS.API.STREAM.INFO.KV_ORG_SETTINGS"
    with pytest.raises(InvalidIdentifier):
        subjects.kv_read_patterns("org.>")


def test_qualified_tool_names_match_what_every_client_accepts() -> None:
    import re

    from mcpmesh.proto.ids import TOOL_NAME_PATTERN, qualified_tool_name, split_qualified_name

    assert qualified_tool_name("context", "job_status") == "context_job_status"
    assert re.fullmatch(TOOL_NAME_PATTERN, qualified_tool_name("context", "create"))
    assert split_qualified_name("context_job_status") == ("context", "job_status")
    for bad in ("context", "context_", "_create", "Context_create", "context.create"):
        assert split_qualified_name(bad) is None
    for bad_tool in ("with.dot", "with space", "x" * 60, ""):
        with pytest.raises(InvalidIdentifier):
            qualified_tool_name("context", bad_tool)


def test_limit_exceeded_and_rate_limited_have_distinct_jsonrpc_codes() -> None:
    from mcpmesh.proto.errors import JSONRPC_CODES

    assert JSONRPC_CODES[ErrorCode.LIMIT_EXCEEDED] != JSONRPC_CODES[ErrorCode.RATE_LIMITED]
    assert len(set(JSONRPC_CODES.values())) == len(JSONRPC_CODES)


def test_a_tool_error_result_carries_the_mesh_error_and_reads_back() -> None:
    from mcpmesh.proto.errors import error_of_tool_result, tool_error_result

    error = MeshError(ErrorCode.UNAVAILABLE, "provider down", retryable=True, details={"provider": "x"})
    result = tool_error_result(error)
    assert result["isError"] is True and result["content"][0]["text"] == "unavailable: provider down"
    assert error_of_tool_result(msgspec.json.decode(msgspec.json.encode(result))) == error
    assert error_of_tool_result({"content": []}) is None
    foreign = error_of_tool_result({"isError": True, "content": [{"type": "text", "text": "boom"}]})
    assert foreign == MeshError(ErrorCode.INTERNAL, "boom", retryable=False)
