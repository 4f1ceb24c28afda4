"""NATS users and their permissions: the broker itself enforces who may say and hear what.

Three kinds of user (names from `mcpmesh.proto.subjects`), each allowed only what it needs:

- `gateway`: publishes requests to every service, control subjects (key events, tenant
  commands), its own audit events and nats.micro discovery; owns JetStream (streams, KV
  buckets, consumers, acks). Hears only `control.keys`, `control.stamps.*` (services asking
  for their jobs' stamps, answered once: `allow_responses`) and its own inbox.
- `svc-<service>`: hears its own requests (`mcp.*.<service>[.<replica>]`), its own tenant commands and
  nats.micro requests, and its own inbox; replies only to the requests it received
  (`allow_responses`: up to `STREAM_MAX_FRAMES` messages within `STREAM_MAX_SECONDS`, for a
  reply streamed as frames); publishes only its own usage/audit subjects, requests to the
  services it may call downstream (`stamp.DOWNSTREAM`) and, if there are any, its own
  `control.stamps.<service>` (its jobs' tickets and stamps, `tenancy.tickets`), its own
  `$SRV.PING` (health probe) and the JetStream API calls that *read* the `ORG_SETTINGS` bucket.
- `<org id>` (the org's internal publisher): publishes only `mcp.<org>.>`, hears only its inbox.

Every user receives replies on its own inbox prefix (`subjects.inbox_prefix(user)`), never
on `_INBOX.>`; `mcpmesh.bus.connect` sets it from the user name. Passwords are literal or a
`$VAR` reference that nats-server reads from its environment (the shipped compose config).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from mcpmesh.proto.headers import STREAM_MAX_FRAMES, STREAM_MAX_SECONDS
from mcpmesh.proto.ids import validate_org_id
from mcpmesh.proto.subjects import (
    ALL_CONTROL,
    ALL_MICRO,
    ALL_SERVICE_REQUESTS,
    GATEWAY_USER,
    JS_ACKS,
    JS_API,
    KEY_EVENTS,
    KV_WRITES,
    STAMP_REQUESTS,
    audit_source_pattern,
    cancel_queue_subject,
    inbox_space,
    kv_read_patterns,
    micro_patterns,
    micro_ping,
    org_subject_space,
    service_event_patterns,
    service_of_user,
    service_queue_subject,
    service_request_subjects,
    service_user,
    stamp_request_subject,
    tenant_control_patterns,
    validate_bus_user,
)
from mcpmesh.proto.tiers import ORG_SETTINGS_BUCKET
from mcpmesh.tenancy.stamp import DOWNSTREAM


def permissions(user: str) -> dict[str, Any]:
    """The nats-server `permissions` block of one mesh user."""
    validate_bus_user(user)
    if user == GATEWAY_USER:
        return {
            "publish": {
                "allow": [
                    ALL_SERVICE_REQUESTS,
                    ALL_CONTROL,
                    audit_source_pattern(GATEWAY_USER),
                    ALL_MICRO,
                    JS_API,
                    KV_WRITES,
                    JS_ACKS,
                ]
            },
            "subscribe": {"allow": [inbox_space(user), KEY_EVENTS, STAMP_REQUESTS]},
            "allow_responses": {"max": 1, "expires": "60s"},  # answers to stamp requests
        }
    service = service_of_user(user)
    if service is not None:
        downstream = [  # requests to its callees, and cancelling them
            subject
            for d in DOWNSTREAM.get(service, ())
            for subject in (service_queue_subject(d), cancel_queue_subject(d))
        ]
        if downstream:  # its jobs call them too, with stamps the gateway gives for a ticket
            downstream.append(stamp_request_subject(service))
        return {
            "publish": {
                "allow": [
                    *service_event_patterns(service),
                    *downstream,
                    micro_ping(service),
                    *kv_read_patterns(ORG_SETTINGS_BUCKET),
                ]
            },
            "subscribe": {
                "allow": [
                    *service_request_subjects(service),  # shared, and each replica's own
                    tenant_control_patterns(service),
                    *micro_patterns(service),
                    inbox_space(user),
                ]
            },
            # A reply may be a stream of frames (progress, then the response in parts).
            "allow_responses": {"max": STREAM_MAX_FRAMES, "expires": f"{STREAM_MAX_SECONDS}s"},
        }
    return {
        "publish": {"allow": [org_subject_space(user)]},
        "subscribe": {"allow": [inbox_space(user)]},
    }


def user_entry(user: str, password: str) -> dict[str, Any]:
    """The nats-server `authorization.users` entry for one user."""
    return {"user": validate_bus_user(user), "password": password, "permissions": permissions(user)}


def tenant_user(org_id: str, password: str) -> dict[str, Any]:
    """The entry of an org's internal publisher: publish only `mcp.<org>.>`, hear only its inbox."""
    return user_entry(validate_org_id(org_id), password)


def render_user(entry: Mapping[str, Any]) -> str:
    """One user entry in nats-server configuration syntax (JSON is valid there; `$VAR` refs stay bare)."""
    text = json.dumps(entry)
    password = str(entry["password"])
    if password.startswith("$"):
        text = text.replace(json.dumps(password), password, 1)
    return text


def render_server_config(
    passwords: Mapping[str, str], *, store_dir: str, http_port: int | None = 8222
) -> str:
    """A whole nats-server configuration: JetStream on, every user of `passwords` with its
    permissions. The store dir is in the file (not `-sd`), so a reload (SIGHUP) is accepted."""
    lines = [
        "# nats-server configuration for the mcpmesh suite. Generated by",
        "# mcpmesh.tenancy.natsauth.render_server_config: edit that, not this file.",
        "# Each component connects as its own user (gateway, svc-<service>, an org's publisher)",
        "# and may publish and subscribe only where its role needs: see libs/tenancy/README.md.",
        "port: 4222",
    ]
    if http_port is not None:
        lines.append(f"http_port: {http_port}")
    lines += [
        f"jetstream {{ store_dir: {json.dumps(store_dir)} }}",
        "authorization {",
        "  users = [",
        *("    " + render_user(user_entry(user, pw)) for user, pw in sorted(passwords.items())),
        "  ]",
        "}",
        "",
    ]
    return "\n".join(lines)


def password_reference(user: str) -> str:
    """`$NATS_SVC_CONTEXT_PASSWORD` for `svc-context`: the env variable a shipped config reads."""
    return "$NATS_" + validate_bus_user(user).upper().replace("-", "_") + "_PASSWORD"


def mesh_users(services: Iterable[str], orgs: Iterable[str] = ()) -> list[str]:
    """The gateway, every service's user and every org's publisher."""
    return [GATEWAY_USER, *(service_user(s) for s in services), *(validate_org_id(o) for o in orgs)]


@dataclass
class BusUsers:
    """Every NATS user of one deployment with its password (or `$VAR` reference): what the
    server config is rendered from and what each component's `NATS_URL` carries."""

    passwords: dict[str, str] = field(default_factory=dict)

    @classmethod
    def generate(cls, users: Iterable[str]) -> BusUsers:
        return cls({validate_bus_user(u): new_password() for u in users})

    @classmethod
    def references(cls, users: Iterable[str]) -> BusUsers:
        """Every user's password as a `$VAR` reference nats-server reads from its environment."""
        return cls({validate_bus_user(u): password_reference(u) for u in users})

    def ensure(self, users: Iterable[str]) -> bool:
        """Add a password for every user that has none; True if any was added."""
        added = False
        for user in users:
            if validate_bus_user(user) not in self.passwords:
                self.passwords[user] = new_password()
                added = True
        return added

    def issue_tenant(self, org_id: str) -> str:
        """A new password for the org's publisher (replaces any earlier one)."""
        password = new_password()
        self.passwords[validate_org_id(org_id)] = password
        return password

    def revoke_tenant(self, org_id: str) -> bool:
        return self.passwords.pop(validate_org_id(org_id), None) is not None

    def tenants(self) -> list[str]:
        return sorted(u for u in self.passwords if u.startswith("org-"))

    def url(self, base_url: str, user: str) -> str:
        """`base_url` (nats://host:port) carrying `user`'s credentials."""
        parts = urlsplit(base_url)
        netloc = f"{validate_bus_user(user)}:{self.passwords[user]}@{parts.hostname}"
        if parts.port:
            netloc += f":{parts.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    def render(self, *, store_dir: str, http_port: int | None = None) -> str:
        return render_server_config(self.passwords, store_dir=store_dir, http_port=http_port)


def new_password() -> str:
    """48 hex characters: URL-safe, so it can stand in a nats:// URL as it is."""
    return secrets.token_hex(24)


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (created with mode 0600, never world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    path.chmod(0o600)


@dataclass(frozen=True)
class BusConfigDir:
    """A nats-server's own directory: `bus.json` (every user's password, or a `$VAR` reference,
    and the server's JetStream store dir and monitoring port), `nats.conf` rendered from it, and
    `nats.pid`. `./mesh up` keeps one in `.mesh/nats` (the JetStream store lives there too);
    `meshctl bus-user` edits it and reloads the running server."""

    path: Path

    @property
    def bus_file(self) -> Path:
        return self.path / "bus.json"

    @property
    def conf_file(self) -> Path:
        return self.path / "nats.conf"

    @property
    def pid_file(self) -> Path:
        return self.path / "nats.pid"

    def exists(self) -> bool:
        return self.bus_file.exists()

    def load(self) -> tuple[BusUsers, str, int | None]:
        """(users, JetStream store dir, monitoring port); a new directory: no users, the store
        in the directory itself, no monitoring port."""
        if not self.exists():
            return BusUsers(), str(self.path), None
        data = json.loads(self.bus_file.read_text())
        users = BusUsers({validate_bus_user(u): str(p) for u, p in data["users"].items()})
        return users, str(data["store_dir"]), data.get("http_port")

    def write(self, users: BusUsers, store_dir: str | None = None, http_port: int | None = None) -> None:
        """Save the users (keeping the directory's store dir and port unless given) and render
        the server config from them; both files are readable by their owner only."""
        if self.exists():
            _, kept_dir, kept_port = self.load()
            store_dir = store_dir or kept_dir
            http_port = http_port if http_port is not None else kept_port
        store_dir = store_dir or str(self.path)
        data = {
            "store_dir": store_dir,
            "http_port": http_port,
            "users": dict(sorted(users.passwords.items())),
        }
        write_private(self.bus_file, json.dumps(data, indent=2) + "\n")
        write_private(self.conf_file, users.render(store_dir=store_dir, http_port=http_port))

    def reload(self) -> bool:
        """Make the running nats-server read its config again (SIGHUP); False if none runs here."""
        try:
            pid = int(self.pid_file.read_text().strip())
            os.kill(pid, signal.SIGHUP)
        except (OSError, ValueError):
            return False
        return True
