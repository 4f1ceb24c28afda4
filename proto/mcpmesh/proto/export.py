"""Export the contract: JSON Schemas of every bus type and an AsyncAPI 3.0 document.

    python -m mcpmesh.proto.export [--check]

writes proto/schema/ (or, with --check, exits 1 when the files differ from the code).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import msgspec

from mcpmesh.proto import events, headers, jobs, rpc, tiers
from mcpmesh.proto.errors import MeshError
from mcpmesh.proto.ids import ORG_ID_PATTERN, SERVICES

OUT = Path(__file__).resolve().parents[2] / "schema"
TYPES: tuple[type[msgspec.Struct], ...] = (
    headers.RequestHeaders,
    headers.ReplyFrameHeaders,
    headers.CancelNotice,
    rpc.JsonRpcRequest,
    rpc.JsonRpcReply,
    MeshError,
    events.UsageEvent,
    events.AuditEvent,
    events.KeyEvent,
    events.TenantCommand,
    events.TenantDataReply,
    tiers.OrgSettings,
    jobs.JobView,
    jobs.JobList,
    jobs.StampRequest,
    jobs.StampReply,
)
REF = "#/components/schemas/{name}"


def schemas() -> dict[str, Any]:
    _, components = msgspec.json.schema_components(TYPES, ref_template=REF)
    return dict(sorted(components.items()))


def _message(name: str, payload: str, summary: str, headers_schema: str | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {
        "name": name,
        "summary": summary,
        "contentType": "application/json",
        "payload": {"$ref": REF.format(name=payload)},
    }
    if headers_schema:
        message["headers"] = {"$ref": REF.format(name=headers_schema)}
    return message


def asyncapi() -> dict[str, Any]:
    org = {"description": f"Organization id, validated against {ORG_ID_PATTERN}"}
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "mcpmesh bus",
            "version": "1.0.0",
            "description": "Tenant-stamped MCP over NATS. Every request carries the gateway-signed "
            "tenant stamp; a service serves only the org its subject and stamp agree on.",
        },
        "defaultContentType": "application/json",
        "channels": {
            "serviceRequest": {
                "address": "mcp.{org_id}.{service}",
                "description": "One JSON-RPC exchange; replicas subscribe mcp.*.<service> in queue group <service>.",
                "parameters": {"org_id": org, "service": {"enum": list(SERVICES)}},
                "messages": {
                    "request": {"$ref": "#/components/messages/mcpRequest"},
                    "reply": {"$ref": "#/components/messages/mcpReply"},
                },
            },
            "serviceInstanceRequest": {
                "address": "mcp.{org_id}.{service}.{instance}",
                "description": "The same exchange addressed to one replica (its nats.micro id); the "
                "gateway uses it to route around replicas that stopped answering health checks.",
                "parameters": {
                    "org_id": org,
                    "service": {"enum": list(SERVICES)},
                    "instance": {"description": "The replica's nats.micro id (letters and digits)"},
                },
                "messages": {
                    "request": {"$ref": "#/components/messages/mcpRequest"},
                    "reply": {"$ref": "#/components/messages/mcpReply"},
                },
            },
            "serviceCancel": {
                "address": "mcp.{org_id}.{service}.cancel",
                "description": "Stop a call in flight: every replica hears it (no queue group) and "
                "stops the call of the stamp's org and key that the notice names.",
                "parameters": {"org_id": org, "service": {"enum": list(SERVICES)}},
                "messages": {"cancel": {"$ref": "#/components/messages/cancelNotice"}},
            },
            "usage": {
                "address": "usage.{org_id}.{service}",
                "description": "Per-call usage events, captured by JetStream stream USAGE.",
                "parameters": {"org_id": org, "service": {"enum": list(SERVICES)}},
                "messages": {"usageEvent": {"$ref": "#/components/messages/usageEvent"}},
            },
            "audit": {
                "address": "audit.{org_id}.{source}",
                "description": "Audit events, captured by JetStream stream AUDIT.",
                "parameters": {"org_id": org, "source": {"enum": [*SERVICES, "gateway"]}},
                "messages": {"auditEvent": {"$ref": "#/components/messages/auditEvent"}},
            },
            "keyEvents": {
                "address": "control.keys",
                "description": "Key revocations, suspensions and rotations, broadcast to every gateway replica.",
                "messages": {"keyEvent": {"$ref": "#/components/messages/keyEvent"}},
            },
            "tenantControl": {
                "address": "control.tenants.{action}.{service}",
                "description": "The gateway asks one service to delete or export all data of one org.",
                "parameters": {"action": {"enum": ["delete", "export"]}, "service": {"enum": list(SERVICES)}},
                "messages": {
                    "command": {"$ref": "#/components/messages/tenantCommand"},
                    "reply": {"$ref": "#/components/messages/tenantDataReply"},
                },
            },
            "stampRequests": {
                "address": "control.stamps.{service}",
                "description": "A service asks the gateway for a job's ticket (with the stamp of the "
                "call starting it) or, with that ticket, a fresh stamp to call other services as the "
                "job's org. Only svc-<service> may publish there; one gateway replica answers.",
                "parameters": {"service": {"enum": list(SERVICES)}},
                "messages": {
                    "request": {"$ref": "#/components/messages/stampRequest"},
                    "reply": {"$ref": "#/components/messages/stampReply"},
                },
            },
        },
        "operations": {
            "callService": {
                "action": "send",
                "channel": {"$ref": "#/channels/serviceRequest"},
                "messages": [{"$ref": "#/channels/serviceRequest/messages/request"}],
                "reply": {
                    "channel": {"$ref": "#/channels/serviceRequest"},
                    "messages": [{"$ref": "#/channels/serviceRequest/messages/reply"}],
                },
            },
            "cancelCall": {"action": "send", "channel": {"$ref": "#/channels/serviceCancel"}},
            "publishUsage": {"action": "send", "channel": {"$ref": "#/channels/usage"}},
            "publishAudit": {"action": "send", "channel": {"$ref": "#/channels/audit"}},
            "broadcastKeyEvent": {"action": "send", "channel": {"$ref": "#/channels/keyEvents"}},
            "askForStamp": {
                "action": "send",
                "channel": {"$ref": "#/channels/stampRequests"},
                "messages": [{"$ref": "#/channels/stampRequests/messages/request"}],
                "reply": {
                    "channel": {"$ref": "#/channels/stampRequests"},
                    "messages": [{"$ref": "#/channels/stampRequests/messages/reply"}],
                },
            },
            "controlTenant": {
                "action": "send",
                "channel": {"$ref": "#/channels/tenantControl"},
                "messages": [{"$ref": "#/channels/tenantControl/messages/command"}],
                "reply": {
                    "channel": {"$ref": "#/channels/tenantControl"},
                    "messages": [{"$ref": "#/channels/tenantControl/messages/reply"}],
                },
            },
        },
        "components": {
            "messages": {
                "mcpRequest": _message("mcpRequest", "JsonRpcRequest", "An MCP request", "RequestHeaders"),
                "mcpReply": _message(
                    "mcpReply",
                    "JsonRpcReply",
                    "The MCP reply (errors carry MeshError data): one message, or a stream of "
                    "frames (progress notifications, then the reply in parts; see ReplyFrameHeaders)",
                    "ReplyFrameHeaders",
                ),
                "cancelNotice": _message(
                    "cancelNotice", "CancelNotice", "Stop one call in flight", "RequestHeaders"
                ),
                "usageEvent": _message("usageEvent", "UsageEvent", "One served call"),
                "auditEvent": _message("auditEvent", "AuditEvent", "An admin action or key use"),
                "keyEvent": _message("keyEvent", "KeyEvent", "A key changed"),
                "tenantCommand": _message(
                    "tenantCommand", "TenantCommand", "Delete or export one org's data"
                ),
                "stampRequest": _message(
                    "stampRequest", "StampRequest", "A job's ticket or stamp, asked for"
                ),
                "stampReply": _message("stampReply", "StampReply", "The ticket or stamp, or why not"),
                "tenantDataReply": _message(
                    "tenantDataReply", "TenantDataReply", "What a service dropped or holds"
                ),
            },
            "schemas": schemas(),
        },
    }


def rendered() -> dict[str, str]:
    """File name -> exact text, for writing and for the drift check."""
    files = {"asyncapi.json": asyncapi()}
    files.update({f"{name}.schema.json": schema for name, schema in schemas().items()})
    return {name: json.dumps(doc, indent=2, sort_keys=True) + "\n" for name, doc in files.items()}


def main(argv: list[str]) -> int:
    files = rendered()
    if "--check" in argv:
        stale = [n for n, text in files.items() if not (OUT / n).exists() or (OUT / n).read_text() != text]
        extra = sorted(p.name for p in OUT.glob("*.json") if p.name not in files)
        for name in stale + extra:
            print(f"proto/schema/{name} differs from the code: run python -m mcpmesh.proto.export")
        return 1 if stale or extra else 0
    OUT.mkdir(exist_ok=True)
    for old in OUT.glob("*.json"):
        if old.name not in files:
            old.unlink()
    for name, text in files.items():
        (OUT / name).write_text(text)
    print(f"wrote {len(files)} files to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
