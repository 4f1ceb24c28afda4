"""Which scope a tool needs and who sees it."""

from __future__ import annotations

from mcpmesh.gateway.catalog import can_list, tool_entry


def test_scope_from_meta_or_conservative_default() -> None:
    declared = tool_entry("context", {"name": "create", "_meta": {"mcpmesh/scope": "context:write"}})
    assert declared is not None and declared.scope == "context:write" and not declared.repeatable
    read_only = tool_entry("context", {"name": "get", "annotations": {"readOnlyHint": True}})
    assert read_only is not None and read_only.scope == "context:read" and read_only.repeatable
    unmarked = tool_entry("context", {"name": "mystery"})
    assert unmarked is not None and unmarked.scope == "context:write"
    assert tool_entry("context", {"name": ""}) is None and tool_entry("context", {}) is None


def test_visibility_by_scope_and_tier() -> None:
    entry = tool_entry("dxp", {"name": "x", "_meta": {"mcpmesh/scope": "dxp:read", "mcpmesh/tiers": ["pro"]}})
    assert entry is not None
    assert entry.visible_to(("dxp:read",), "pro")
    assert entry.visible_to(("*",), "pro")
    assert not entry.visible_to(("dxp:read",), "free")
    assert not entry.visible_to(("dxp:write",), "pro")
    assert not entry.visible_to(("context:*",), "pro")


def test_param_header_declarations_are_noticed() -> None:
    schema = {"type": "object", "properties": {"region": {"type": "string", "x-mcp-header": "Region"}}}
    entry = tool_entry("dxp", {"name": "x", "inputSchema": schema})
    assert entry is not None and entry.param_headers
    plain = tool_entry("dxp", {"name": "y", "inputSchema": {"type": "object"}})
    assert plain is not None and not plain.param_headers


def test_listing_needs_some_scope_on_the_service() -> None:
    assert can_list(("dxp:write",), "dxp") and can_list(("*",), "dxp") and can_list(("dxp:*",), "dxp")
    assert not can_list(("context:read",), "dxp") and not can_list((), "dxp")


def test_repeatability_and_idempotency_key_come_from_annotations_and_meta() -> None:
    idempotent = tool_entry("context", {"name": "update", "annotations": {"idempotentHint": True}})
    assert idempotent is not None and idempotent.repeatable and idempotent.idempotency_key is None
    keyed = tool_entry(
        "context",
        {
            "name": "append",
            "annotations": {"idempotentHint": False},
            "_meta": {"mcpmesh/idempotency_key": "op"},
        },
    )
    assert keyed is not None and not keyed.repeatable and keyed.idempotency_key == "op"
    odd = tool_entry("context", {"name": "x", "_meta": {"mcpmesh/idempotency_key": 3}})
    assert odd is not None and odd.idempotency_key is None
