"""Every NATS subject and stream name; nothing else builds subject strings.

mcp.<org>.<service>        one JSON-RPC exchange with a service (queue group = service)
mcp.<org>.<service>.<id>   the same, addressed to one replica (its nats.micro id)
usage.<org>.<service>      per-call usage events (JetStream stream USAGE)
audit.<org>.<source>       audit events (JetStream stream AUDIT)
control.keys               key revocations / suspensions / rotations, to every gateway
control.tenants.delete     drop one org's data in every service
_INBOX_<org>.>             reply inbox prefix of an org's own internal publisher
"""

from __future__ import annotations

from typing import Final

from mcpmesh.proto.ids import (
    InvalidIdentifier,
    validate_instance_id,
    validate_org_id,
    validate_service_name,
)

USAGE_STREAM: Final = "USAGE"
AUDIT_STREAM: Final = "AUDIT"
KEY_EVENTS: Final = "control.keys"
TENANT_ACTIONS: Final = ("delete", "export")


def service_subject(org_id: str, service: str) -> str:
    return f"mcp.{validate_org_id(org_id)}.{validate_service_name(service)}"


def service_queue_subject(service: str) -> str:
    """What every replica of `service` subscribes to, in queue group `service`."""
    return f"mcp.*.{validate_service_name(service)}"


def instance_subject(org_id: str, service: str, instance: str) -> str:
    """One replica of `service` (the gateway routes around replicas that stopped answering)."""
    return f"{service_subject(org_id, service)}.{validate_instance_id(instance)}"


def instance_queue_subject(service: str, instance: str) -> str:
    """What replica `instance` of `service` subscribes to besides the queue subject."""
    return f"{service_queue_subject(service)}.{validate_instance_id(instance)}"


def service_request_subjects(service: str) -> list[str]:
    """Every request subject a replica of `service` may subscribe to: shared and per replica."""
    return [service_queue_subject(service), f"{service_queue_subject(service)}.*"]


def org_and_name(subject: str, prefix: str) -> tuple[str, str]:
    """(org, last token) of a `<prefix>.<org>.<name>` subject; raises InvalidIdentifier otherwise."""
    parts = subject.split(".")
    if len(parts) != 3 or parts[0] != prefix:
        raise InvalidIdentifier(f"not a {prefix}.<org>.<name> subject: {subject!r}")
    return validate_org_id(parts[1]), parts[2]


def org_of_service_subject(subject: str) -> str:
    """The org id a request subject (shared or per replica) names; raises InvalidIdentifier otherwise."""
    head, dot, instance = subject.rpartition(".")
    if dot and head.count(".") == 2:
        validate_instance_id(instance)
        subject = head
    return org_and_name(subject, "mcp")[0]


def usage_subject(org_id: str, service: str) -> str:
    return f"usage.{validate_org_id(org_id)}.{validate_service_name(service)}"


def usage_filter(org_id: str | None = None) -> str:
    return f"usage.{validate_org_id(org_id)}.>" if org_id else "usage.>"


def audit_subject(org_id: str, source: str) -> str:
    """`source` is the component that records the event: a service name, or `gateway`."""
    return f"audit.{validate_org_id(org_id)}.{validate_service_name(source)}"


def audit_filter(org_id: str | None = None) -> str:
    return f"audit.{validate_org_id(org_id)}.>" if org_id else "audit.>"


def org_inbox_prefix(org_id: str) -> str:
    return f"_INBOX_{validate_org_id(org_id).replace('-', '_')}"


def service_event_patterns(service: str) -> list[str]:
    """The usage and audit subjects a replica of `service` publishes to, for any org."""
    name = validate_service_name(service)
    return [f"usage.*.{name}", f"audit.*.{name}"]


#: Every service request subject: a service calls others downstream for any org.
ALL_SERVICE_REQUESTS: Final = "mcp.*.*"


def tenant_action_of(subject: str) -> str:
    """`delete` or `export` from a `control.tenants.<action>.<service>` subject."""
    parts = subject.split(".")
    if len(parts) != 4 or parts[:2] != ["control", "tenants"] or parts[2] not in TENANT_ACTIONS:
        raise InvalidIdentifier(f"not a tenant control subject: {subject!r}")
    return parts[2]


def org_subject_space(org_id: str) -> str:
    """Everything an org's own internal publisher may publish to."""
    return f"mcp.{validate_org_id(org_id)}.>"


def tenant_control_subject(action: str, service: str) -> str:
    """Where the gateway asks `service` to delete or export one org's data."""
    if action not in TENANT_ACTIONS:
        raise InvalidIdentifier(f"unknown tenant action {action!r}: expected one of {TENANT_ACTIONS}")
    return f"control.tenants.{action}.{validate_service_name(service)}"
