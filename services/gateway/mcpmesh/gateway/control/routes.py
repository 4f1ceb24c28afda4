"""The admin API's routes in one table: aiohttp routes and the OpenAPI document both come from it,
so no route can exist undocumented."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mcpmesh.gateway.control import admin_keys, admin_orgs, admin_reports, admin_secrets
from mcpmesh.gateway.control import schemas as s
from mcpmesh.gateway.control.admin_http import Handler


@dataclass(frozen=True)
class Param:
    name: str
    where: str  # "path" | "query"
    description: str
    schema: dict[str, Any] = field(default_factory=lambda: {"type": "string"})


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    status: int = 200
    response: dict[str, Any] = field(default_factory=dict)
    body: dict[str, Any] | None = None
    params: tuple[Param, ...] = ()
    errors: tuple[int, ...] = (400, 401)


ORG = Param("org_id", "path", "organization id", {"type": "string", "pattern": s.ORG_ID_PATTERN})
KEY = Param("key_id", "path", "API key id", {"type": "string", "pattern": s.KEY_ID_PATTERN})
SERVICE = Param("service", "path", "service name", {"type": "string", "pattern": r"^[a-z][a-z0-9]{1,30}$"})
SECRET = Param("name", "path", "secret name", {"type": "string", "pattern": s.SECRET_NAME_PATTERN})
SECRETS_PATH = "/admin/orgs/{org_id}/services/{service}/secrets"
Q_ORG = Param("org_id", "query", "only this organization", {"type": "string", "pattern": s.ORG_ID_PATTERN})
SINCE = Param("since", "query", "ISO 8601 start (inclusive)", {"type": "string", "format": "date-time"})
UNTIL = Param("until", "query", "ISO 8601 end (exclusive)", {"type": "string", "format": "date-time"})


def _q(name: str, description: str, **schema: Any) -> Param:
    return Param(name, "query", description, schema or {"type": "string"})


ROUTES: tuple[Route, ...] = (
    Route("POST", "/admin/orgs", admin_orgs.create_org, "Create an organization", "orgs", 201,
          s.ORG, s.ORG_CREATE),
    Route("GET", "/admin/orgs", admin_orgs.list_orgs, "List organizations (by id, paginated)", "orgs",
          response=s.page(s.ORG),
          params=(_q("limit", "page size", type="integer", minimum=1, maximum=500, default=50),
                  _q("cursor", "next_cursor of the previous page"))),
    Route("GET", "/admin/orgs/{org_id}", admin_orgs.get_org, "Show an organization", "orgs",
          response=s.ORG, params=(ORG,), errors=(400, 401, 404)),
    Route("PATCH", "/admin/orgs/{org_id}", admin_orgs.update_org,
          "Update name, tier and settings (a null setting falls back to the tier default)", "orgs",
          response=s.ORG, body=s.ORG_UPDATE, params=(ORG,), errors=(400, 401, 404, 409)),
    Route("POST", "/admin/orgs/{org_id}/suspend", admin_orgs.suspend_org,
          "Suspend an organization: its keys are refused on every replica within a second", "orgs",
          response=s.ORG, params=(ORG,), errors=(400, 401, 404, 409)),
    Route("POST", "/admin/orgs/{org_id}/resume", admin_orgs.resume_org, "Resume a suspended organization",
          "orgs", response=s.ORG, params=(ORG,), errors=(400, 401, 404, 409)),
    Route("DELETE", "/admin/orgs/{org_id}", admin_orgs.delete_org,
          "Delete an organization and all of its data in every service (502 lists services that failed)",
          "orgs", response=s.ORG_DELETED, params=(ORG,), errors=(400, 401, 404, 502)),
    Route("GET", "/admin/orgs/{org_id}/export", admin_orgs.export_org,
          "Export everything held for an organization (control rows without key hashes, every service)",
          "orgs", response=s.ORG_EXPORT, params=(ORG,), errors=(400, 401, 404, 502)),
    Route("POST", "/admin/orgs/{org_id}/keys", admin_keys.create_key,
          "Create an API key: the secret is in this answer only", "keys", 201, s.KEY_WITH_SECRET,
          s.KEY_CREATE, (ORG,), (400, 401, 404, 409)),
    Route("GET", "/admin/orgs/{org_id}/keys", admin_keys.list_keys, "List an organization's keys (no secrets)",
          "keys", response=s.items(s.KEY), params=(ORG,), errors=(400, 401, 404)),
    Route("POST", "/admin/keys/{key_id}/rotate", admin_keys.rotate_key,
          "New secret for a key; the old one stays valid for grace_s seconds", "keys",
          response=s.KEY_WITH_SECRET, body=s.KEY_ROTATE, params=(KEY,), errors=(400, 401, 404, 409)),
    Route("POST", "/admin/keys/{key_id}/suspend", admin_keys.suspend_key, "Suspend a key (reversible)", "keys",
          response=s.KEY, params=(KEY,), errors=(400, 401, 404, 409)),
    Route("POST", "/admin/keys/{key_id}/resume", admin_keys.resume_key, "Resume a suspended key", "keys",
          response=s.KEY, params=(KEY,), errors=(400, 401, 404, 409)),
    Route("POST", "/admin/keys/{key_id}/revoke", admin_keys.revoke_key, "Revoke a key for good", "keys",
          response=s.KEY, params=(KEY,), errors=(400, 401, 404)),
    Route("PUT", SECRETS_PATH + "/{name}", admin_secrets.put_secret,
          "Set (or replace) an organization's secret in a service: the value is never shown again",
          "secrets", response=s.SECRET_INFO, body=s.SECRET_PUT, params=(ORG, SERVICE, SECRET),
          errors=(400, 401, 404, 409, 502)),
    Route("GET", SECRETS_PATH, admin_secrets.list_secrets,
          "List an organization's secrets in a service (names, fingerprints, never values)", "secrets",
          response=s.items(s.SECRET_INFO), params=(ORG, SERVICE), errors=(400, 401, 404, 409, 502)),
    Route("DELETE", SECRETS_PATH + "/{name}", admin_secrets.delete_secret,
          "Delete an organization's secret in a service", "secrets", response=s.SECRET_DELETED,
          params=(ORG, SERVICE, SECRET), errors=(400, 401, 404, 409, 502)),
    Route("GET", "/admin/usage", admin_reports.usage,
          "Usage totals and groups from hourly roll-ups", "usage", response=s.USAGE,
          params=(Q_ORG, _q("key_id", "only this key"), _q("service", "only this service"),
                  _q("method", "only this JSON-RPC method"), _q("tool", "only this tool"),
                  _q("llm_model", "only LLM calls served by this '<provider>/<model>'"),
                  _q("llm_billed_to", "only LLM calls billed to 'system' (the mesh) or 'org' (own key)"),
                  SINCE, UNTIL,
                  _q("group_by", "comma-separated: " + ", ".join(s.USAGE_GROUPS)))),
    Route("GET", "/admin/audit", admin_reports.audit_log, "Audit events, newest first", "audit",
          response=s.page(s.AUDIT),
          params=(Q_ORG, _q("actor", "'admin' or a key id"), _q("action", "e.g. key.revoke"),
                  _q("outcome", "'ok' or an error code"), SINCE, UNTIL,
                  _q("limit", "page size", type="integer", minimum=1, maximum=1000, default=100),
                  _q("cursor", "next_cursor of the previous page"))),
)  # fmt: skip
