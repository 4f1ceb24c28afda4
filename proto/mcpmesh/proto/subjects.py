"""Every NATS subject and stream name; nothing else builds subject strings.

mcp.<org>.<service>        one JSON-RPC exchange with a service (queue group = service)
mcp.<org>.<service>.<id>   the same, addressed to one replica (its nats.micro id)
mcp.<org>.<service>.cancel stop a call in flight (every replica hears it, no queue group)
usage.<org>.<service>      per-call usage events (JetStream stream USAGE)
audit.<org>.<source>       audit events (JetStream stream AUDIT)
control.keys               key revocations / suspensions / rotations, to every gateway
control.tenants.<action>.<service>   delete or export one org's data in one service
control.stamps.<service>   a service asks the gateway for its jobs' tickets and stamps (request/reply)
_INBOX_<user>.>            reply inbox of each NATS user (gateway, svc-<service>, <org>)
$SRV.<verb>[.<service>[.<id>]]       nats.micro discovery (PING, INFO, STATS)
$JS.API.…, $KV.<bucket>.<key>        JetStream API and KV writes (permission patterns below)
"""

from __future__ import annotations

import re
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


CANCEL: Final = "cancel"


def cancel_subject(org_id: str, service: str) -> str:
    """Where a caller asks the replicas of `service` to stop one of the org's calls."""
    return f"{service_subject(org_id, service)}.{CANCEL}"


def cancel_queue_subject(service: str) -> str:
    """What every replica of `service` subscribes to (no queue group) to hear cancellations."""
    return f"{service_queue_subject(service)}.{CANCEL}"


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


GATEWAY_USER: Final = "gateway"
_SERVICE_USER_PREFIX: Final = "svc-"
_USER_RE: Final = re.compile(r"^(gateway|svc-[a-z][a-z0-9]{1,30}|org-[a-z0-9-]{3,40})$")


def service_user(service: str) -> str:
    """The NATS user every replica of `service` connects as."""
    return _SERVICE_USER_PREFIX + validate_service_name(service)


def service_of_user(user: str) -> str | None:
    """`context` for `svc-context`; None for any other user."""
    if not user.startswith(_SERVICE_USER_PREFIX):
        return None
    return validate_service_name(user.removeprefix(_SERVICE_USER_PREFIX))


def validate_bus_user(user: object) -> str:
    """A NATS user name of the mesh: `gateway`, `svc-<service>` or an org id (its publisher)."""
    if not isinstance(user, str) or not _USER_RE.fullmatch(user):
        raise InvalidIdentifier(f"invalid NATS user {user!r}: expected gateway, svc-<service> or an org id")
    if user.startswith("org-"):
        validate_org_id(user)
    return user


def inbox_prefix(user: str) -> str:
    """The reply inbox prefix of a NATS user: the only inbox the broker lets it subscribe to."""
    return "_INBOX_" + validate_bus_user(user).replace("-", "_")


def org_inbox_prefix(org_id: str) -> str:
    return inbox_prefix(validate_org_id(org_id))


def inbox_space(user: str) -> str:
    return f"{inbox_prefix(user)}.>"


def service_event_patterns(service: str) -> list[str]:
    """The usage and audit subjects a replica of `service` publishes to, for any org."""
    return [f"usage.*.{validate_service_name(service)}", audit_source_pattern(service)]


def audit_source_pattern(source: str) -> str:
    """Every org's audit subject of one source (a service, or `gateway`)."""
    return f"audit.*.{validate_service_name(source)}"


#: Every service request subject, shared or per replica: what the gateway publishes to.
ALL_SERVICE_REQUESTS: Final = "mcp.>"
#: Every control subject (key events, tenant commands): the gateway's alone to publish.
ALL_CONTROL: Final = "control.>"
#: nats.micro discovery requests to every service (`$SRV.PING|INFO|STATS[.<name>[.<id>]]`).
ALL_MICRO: Final = "$SRV.>"
#: The whole JetStream API, KV writes and acks: the gateway owns streams, buckets and consumers.
JS_API: Final = "$JS.API.>"
KV_WRITES: Final = "$KV.>"
JS_ACKS: Final = "$JS.ACK.>"
_MICRO_VERBS: Final = ("PING", "INFO", "STATS")


def micro_patterns(service: str) -> list[str]:
    """What a replica of `service` subscribes to for nats.micro: every verb, bare, by name and by id."""
    name = validate_service_name(service)
    return [
        p for verb in _MICRO_VERBS for p in (f"$SRV.{verb}", f"$SRV.{verb}.{name}", f"$SRV.{verb}.{name}.*")
    ]


def micro_ping(service: str) -> str:
    """`$SRV.PING.<service>`: answered by every replica (health probes)."""
    return f"$SRV.PING.{validate_service_name(service)}"


def kv_read_patterns(bucket: str) -> list[str]:
    """The JetStream API requests that read a KV bucket (bucket info, direct and stream gets)."""
    if not re.fullmatch(r"[A-Z][A-Z0-9_]{0,63}", bucket):
        raise InvalidIdentifier(f"invalid KV bucket name {bucket!r}")
    stream = f"KV_{bucket}"
    return [
        f"$JS.API.STREAM.INFO.{stream}",
        f"$JS.API.DIRECT.GET.{stream}.>",
        f"$JS.API.STREAM.MSG.GET.{stream}",
    ]


def tenant_action_of(subject: str) -> str:
    """`delete` or `export` from a `control.tenants.<action>.<service>` subject."""
    parts = subject.split(".")
    if len(parts) != 4 or parts[:2] != ["control", "tenants"] or parts[2] not in TENANT_ACTIONS:
        raise InvalidIdentifier(f"not a tenant control subject: {subject!r}")
    return parts[2]


def org_subject_space(org_id: str) -> str:
    """Everything an org's own internal publisher may publish to."""
    return f"mcp.{validate_org_id(org_id)}.>"


def tenant_control_patterns(service: str) -> str:
    """Every tenant command addressed to `service` (what its replicas subscribe to)."""
    return f"control.tenants.*.{validate_service_name(service)}"


def tenant_control_subject(action: str, service: str) -> str:
    """Where the gateway asks `service` to delete or export one org's data."""
    if action not in TENANT_ACTIONS:
        raise InvalidIdentifier(f"unknown tenant action {action!r}: expected one of {TENANT_ACTIONS}")
    return f"control.tenants.{action}.{validate_service_name(service)}"


#: What the gateway answers (queue group `gateway`): a service asking for its jobs' stamps.
STAMP_REQUESTS: Final = "control.stamps.*"


def stamp_request_subject(service: str) -> str:
    """Where a replica of `service` asks the gateway for a job ticket or a fresh stamp (only
    `svc-<service>` may publish there, so the subject names the asking service)."""
    return f"control.stamps.{validate_service_name(service)}"


def service_of_stamp_request(subject: str) -> str:
    """The service a `control.stamps.<service>` subject names; raises InvalidIdentifier otherwise."""
    parts = subject.split(".")
    if len(parts) != 3 or parts[:2] != ["control", "stamps"]:
        raise InvalidIdentifier(f"not a stamp request subject: {subject!r}")
    return validate_service_name(parts[2])
