"""meshctl — the gateway's admin API from a shell.

Reads MESH_ADMIN_URL and MESH_ADMIN_KEY, else .mesh/dev.json written by `./mesh up`.

  meshctl org create NAME [--tier pro] [--settings JSON]
  meshctl org list | show ORG | update ORG [--name N] [--tier T] [--settings JSON]
  meshctl org suspend ORG | resume ORG | export ORG | delete ORG --yes
  meshctl key create ORG --name N [--scopes '*'] [--tags T,...] [--expires-at ISO]
  meshctl key list ORG | rotate KEY [--grace SECONDS] | suspend KEY | resume KEY | revoke KEY
  meshctl secret set ORG SERVICE NAME   (the value from a prompt or stdin, never an argument)
  meshctl secret list ORG SERVICE | delete ORG SERVICE NAME
  meshctl usage [--org ORG] [--key KEY] [--service S] [--tool T] [--since ISO] [--until ISO] [--group-by F,...]
  meshctl audit [--org ORG] [--actor A] [--action A] [--limit N]
  meshctl bus-user issue ORG | revoke ORG | list   [--dir .mesh/nats]
  meshctl bus-user init --dir DIR --store-dir /data/jetstream [--http-port 8222]
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mcpmesh.meshctl.client import AdminClient, CliError, dev_facts


def _settings(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        raise CliError("--settings must be a JSON object, e.g. '{\"max_contexts\": 10}'") from None
    if not isinstance(value, dict):
        raise CliError("--settings must be a JSON object, e.g. '{\"max_contexts\": 10}'")
    return value


def _cell(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(map(str, value)) or "-"
    return "-" if value is None else str(value)


def _table(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


def _org(api: AdminClient, a: argparse.Namespace) -> Any:
    if a.action == "create":
        body: dict[str, Any] = {"name": a.name, "tier": a.tier}
        if a.settings:
            body["settings"] = _settings(a.settings)
        return api.request("POST", "/orgs", body)
    if a.action == "list":
        items: list[dict[str, Any]] = []
        cursor = None
        while True:
            page = api.request("GET", "/orgs", query={"limit": 500, "cursor": cursor})
            items += page["items"]
            cursor = page["next_cursor"]
            if not cursor:
                break
        return items if a.json else _table(items, ("id", "name", "tier", "status", "created_at"))
    if a.action == "show":
        return api.request("GET", f"/orgs/{a.org}")
    if a.action == "update":
        body = {k: v for k, v in (("name", a.name), ("tier", a.tier)) if v}
        if a.settings:
            body["settings"] = _settings(a.settings)
        if not body:
            raise CliError("nothing to update: give --name, --tier or --settings")
        return api.request("PATCH", f"/orgs/{a.org}", body)
    if a.action in ("suspend", "resume"):
        return api.request("POST", f"/orgs/{a.org}/{a.action}")
    if a.action == "export":
        return api.request("GET", f"/orgs/{a.org}/export")
    if not a.yes:
        raise CliError(f"deleting {a.org} drops all of its data in every service: add --yes to confirm")
    return api.request("DELETE", f"/orgs/{a.org}")


def _key(api: AdminClient, a: argparse.Namespace) -> Any:
    if a.action == "create":
        body: dict[str, Any] = {"name": a.name, "scopes": [s for s in a.scopes.split(",") if s]}
        if a.tags:
            body["tags"] = [t for t in a.tags.split(",") if t]
        if a.expires_at:
            body["expires_at"] = a.expires_at
        return api.request("POST", f"/orgs/{a.org}/keys", body)
    if a.action == "list":
        items = api.request("GET", f"/orgs/{a.org}/keys")["items"]
        return (
            items
            if a.json
            else _table(items, ("id", "name", "status", "scopes", "tags", "last_used_at", "expires_at"))
        )
    if a.action == "rotate":
        return api.request(
            "POST", f"/keys/{a.key}/rotate", {"grace_s": a.grace} if a.grace is not None else {}
        )
    return api.request("POST", f"/keys/{a.key}/{a.action}")


def _secret_value(name: str) -> str:
    """The value to set: typed at a hidden prompt, or piped on stdin (one trailing newline dropped)."""
    value = getpass.getpass(f"value of {name}: ") if sys.stdin.isatty() else sys.stdin.read()
    value = value.removesuffix("\n")
    if not value.strip():
        raise CliError("no value: type it at the prompt or pipe it on stdin (never as an argument)")
    return value


def _secret(api: AdminClient, a: argparse.Namespace) -> Any:
    base = f"/orgs/{a.org}/services/{a.service}/secrets"
    if a.action == "set":
        return api.request("PUT", f"{base}/{a.name}", {"value": _secret_value(a.name)})
    if a.action == "list":
        items = api.request("GET", base)["items"]
        return items if a.json else _table(items, ("name", "fingerprint", "last4", "key_id", "updated_at"))
    return api.request("DELETE", f"{base}/{a.name}")


def _usage(api: AdminClient, a: argparse.Namespace) -> Any:
    query = {
        "org_id": a.org,
        "key_id": a.key,
        "service": a.service,
        "tool": a.tool,
        "since": a.since,
        "until": a.until,
        "group_by": a.group_by,
    }
    result = api.request("GET", "/usage", query=query)
    if a.json:
        return result
    columns = [*(result["group_by"] or []), "calls", "errors", "latency_ms_avg", "llm_cost_usd"]
    rows = [*result["groups"], {**result["totals"], **dict.fromkeys(result["group_by"] or [], "")}]
    if result["group_by"]:
        rows[-1][result["group_by"][0]] = "TOTAL"
    return _table(rows, columns)


def _audit(api: AdminClient, a: argparse.Namespace) -> Any:
    query = {"org_id": a.org, "actor": a.actor, "action": a.action_filter, "limit": a.limit}
    items = api.request("GET", "/audit", query=query)["items"]
    return items if a.json else _table(items, ("ts", "org_id", "actor", "action", "target", "outcome"))


def _bus_user(a: argparse.Namespace) -> Any:
    """An org's internal publisher on NATS: issue (or rotate) its password, revoke it, list them.
    Edits the server's config directory (bus.json, nats.conf) and reloads the running server."""
    try:
        from mcpmesh.proto.ids import SERVICES, InvalidIdentifier
        from mcpmesh.proto.subjects import inbox_prefix, org_subject_space
        from mcpmesh.tenancy.natsauth import BusConfigDir, BusUsers, mesh_users
    except ImportError:
        raise CliError(
            "bus-user needs the mcpmesh libraries: run it from a checkout after ./mesh test or up"
        ) from None
    facts = dev_facts()
    where = a.dir or facts.get("nats_dir")
    if not where:
        raise CliError("no NATS config directory: pass --dir, or start `./mesh up` (which keeps .mesh/nats)")
    bus_dir = BusConfigDir(Path(where))
    if a.action == "init":
        if bus_dir.exists():
            raise CliError(f"{bus_dir.bus_file} exists already: issue or revoke publishers in it")
        bus_dir.write(BusUsers.references(mesh_users(SERVICES)), a.store_dir, a.http_port)
        return {"bus": str(bus_dir.bus_file), "config": str(bus_dir.conf_file)}
    if not bus_dir.exists():
        raise CliError(
            f"{bus_dir.bus_file} does not exist: pass the directory ./mesh up keeps NATS in, "
            "or create one with `meshctl bus-user init --dir DIR`"
        )
    users, _store, _port = bus_dir.load()
    if a.action == "list":
        return {"tenants": users.tenants()}
    try:
        if a.action == "revoke":
            if not users.revoke_tenant(a.org):
                raise CliError(f"{a.org} has no publisher credentials")
            bus_dir.write(users)
            return {"user": a.org, "revoked": True, "reloaded": bus_dir.reload()}
        password = users.issue_tenant(a.org)
        bus_dir.write(users)
        reloaded = bus_dir.reload()
        base = facts.get("nats_url") or "nats://127.0.0.1:4222"
        return {
            "user": a.org,
            "password": password,
            "url": users.url(base, a.org),
            "inbox_prefix": inbox_prefix(a.org),
            "publish": [org_subject_space(a.org)],
            "subscribe": [f"{inbox_prefix(a.org)}.>"],
            "reloaded": reloaded,
        }
    except InvalidIdentifier as exc:
        raise CliError(str(exc)) from None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="meshctl", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    sub = p.add_subparsers(dest="command", required=True)

    org = sub.add_parser("org", help="organizations").add_subparsers(dest="action", required=True)
    c = org.add_parser("create")
    c.add_argument("name")
    c.add_argument("--tier", default="free", choices=("free", "pro", "enterprise"))
    c.add_argument("--settings", help="JSON object of settings overrides")
    org.add_parser("list")
    for action in ("show", "suspend", "resume", "export"):
        org.add_parser(action).add_argument("org")
    u = org.add_parser("update")
    u.add_argument("org")
    u.add_argument("--name")
    u.add_argument("--tier", choices=("free", "pro", "enterprise"))
    u.add_argument("--settings", help="JSON object of settings overrides (null resets one)")
    d = org.add_parser("delete")
    d.add_argument("org")
    d.add_argument("--yes", action="store_true", help="confirm: all of the org's data is dropped")

    key = sub.add_parser("key", help="API keys").add_subparsers(dest="action", required=True)
    k = key.add_parser("create")
    k.add_argument("org")
    k.add_argument("--name", required=True)
    k.add_argument("--scopes", default="*", help="comma-separated, e.g. 'context:read,llm:*' (default '*')")
    k.add_argument("--tags", help="comma-separated labels, e.g. 'support,team:billing' (default none)")
    k.add_argument("--expires-at", help="ISO 8601 expiry")
    key.add_parser("list").add_argument("org")
    r = key.add_parser("rotate")
    r.add_argument("key")
    r.add_argument("--grace", type=float, help="seconds the old secret stays valid (default: the gateway's)")
    for action in ("suspend", "resume", "revoke"):
        key.add_parser(action).add_argument("key")

    sec = sub.add_parser("secret", help="an org's secrets in a service").add_subparsers(
        dest="action", required=True
    )
    for action in ("set", "list", "delete"):
        sp = sec.add_parser(action)
        sp.add_argument("org")
        sp.add_argument("service")
        if action != "list":
            sp.add_argument("name")
    us = sub.add_parser("usage", help="usage totals and groups")
    us.add_argument("--org")
    us.add_argument("--key")
    us.add_argument("--service")
    us.add_argument("--tool")
    us.add_argument("--since")
    us.add_argument("--until")
    us.add_argument(
        "--group-by",
        help="comma-separated: org_id,key_id,service,method,tool,llm_model,llm_billed_to,hour,day",
    )

    au = sub.add_parser("audit", help="audit log, newest first")
    au.add_argument("--org")
    au.add_argument("--actor")
    au.add_argument("--action", dest="action_filter")
    au.add_argument("--limit", type=int, default=50)

    bus = sub.add_parser("bus-user", help="NATS credentials of an org's internal publisher").add_subparsers(
        dest="action", required=True
    )
    for action in ("issue", "revoke"):
        b = bus.add_parser(action)
        b.add_argument("org")
        b.add_argument("--dir", help="the NATS config directory (default: .mesh/nats of ./mesh up)")
    bus.add_parser("list").add_argument("--dir", help="the NATS config directory")
    b = bus.add_parser("init", help="a config directory for a production server ($VAR passwords)")
    b.add_argument("--dir", required=True)
    b.add_argument("--store-dir", required=True, help="the server's JetStream store, e.g. /data/jetstream")
    b.add_argument("--http-port", type=int, help="monitoring port, e.g. 8222")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "bus-user":
            out: Any = _bus_user(args)
        else:
            api = AdminClient.from_env()
            handler = {"org": _org, "key": _key, "secret": _secret, "usage": _usage, "audit": _audit}[
                args.command
            ]
            out = handler(api, args)
    except CliError as exc:
        print(f"meshctl: {exc}", file=sys.stderr)
        return exc.code
    print(out if isinstance(out, str) else json.dumps(out, indent=2))
    return 0
