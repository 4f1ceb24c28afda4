"""Admin auth, org CRUD and validation, settings in NATS KV, the OpenAPI document."""

from __future__ import annotations

import re
from typing import Any

import msgspec
import pytest
from nats.js.errors import KeyNotFoundError

from mcpmesh.gateway.control.routes import ROUTES
from mcpmesh.proto.tiers import ORG_SETTINGS_BUCKET, TIERS, OrgSettings

from .conftest import ADMIN_KEY, Admin


async def test_admin_routes_need_the_admin_key_never_a_tenant_key(admin: Admin) -> None:
    org = await admin.org()
    key = await admin.key(org["id"])
    attempts: list[dict[str, str]] = [
        {},
        {"Authorization": "Bearer wrong-admin-key-0000000"},
        {"Authorization": f"Bearer {key['secret']}"},
        {"x-api-key": key["secret"]},
        {"Authorization": f"Basic {ADMIN_KEY}"},
    ]
    for headers in attempts:
        for method, path in (("GET", "/admin/orgs"), ("POST", "/admin/orgs"), ("GET", "/admin/nowhere")):
            resp = await admin.client.request(method, path, headers=headers, json={"name": "x"})
            assert resp.status == 401, (headers, path)
            body = await resp.json()
            assert body["error"]["code"] == "unauthenticated"
            assert key["secret"] not in str(body)
    resp = await admin.client.get("/admin/orgs", headers={"x-api-key": ADMIN_KEY})
    assert resp.status == 200


async def test_org_create_get_list_update(admin: Admin) -> None:
    created = await admin.org("Acme Corp", tier="pro")
    assert re.fullmatch(r"org-acme-corp-[0-9a-f]{6}", created["id"])
    assert created["status"] == "active" and created["tier"] == "pro"
    assert created["settings"] == msgspec.to_builtins(TIERS["pro"])
    got = await admin.call("GET", f"/admin/orgs/{created['id']}", expect=200)
    assert got == created

    others = [await admin.org(f"Org {i}") for i in range(3)]
    seen, cursor = [], None
    while True:
        page = await admin.call(
            "GET", "/admin/orgs?limit=2" + (f"&cursor={cursor}" if cursor else ""), expect=200
        )
        seen += [o["id"] for o in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted([created["id"], *(o["id"] for o in others)])

    patch = {"name": "Acme", "settings": {"max_contexts": 7, "rate_limits": {"requests_per_minute": 5}}}
    updated = await admin.call("PATCH", f"/admin/orgs/{created['id']}", patch, expect=200)
    assert updated["name"] == "Acme"
    assert updated["settings"]["max_contexts"] == 7
    assert updated["settings"]["rate_limits"] == {"requests_per_minute": 5, "requests_per_day": 50_000}
    assert updated["overrides"] == {"max_contexts": 7, "rate_limits": {"requests_per_minute": 5}}
    downgraded = await admin.call("PATCH", f"/admin/orgs/{created['id']}", {"tier": "free"}, expect=200)
    assert downgraded["settings"]["max_tokens_per_context"] == TIERS["free"].max_tokens_per_context
    assert downgraded["settings"]["max_contexts"] == 7  # its own override stays
    cleared = await admin.call(
        "PATCH", f"/admin/orgs/{created['id']}", {"settings": {"max_contexts": None}}, expect=200
    )
    assert cleared["settings"]["max_contexts"] == TIERS["free"].max_contexts


async def test_effective_settings_are_published_to_kv_and_reach_principals(admin: Admin) -> None:
    org = await admin.org("Kv", tier="enterprise", settings={"allowed_models": ["openai/*"]})
    kv = await admin.plane.bus.kv(ORG_SETTINGS_BUCKET)

    async def published() -> OrgSettings:
        return msgspec.json.decode((await kv.get(org["id"])).value or b"", type=OrgSettings)

    assert (await published()).allowed_models == ["openai/*"]
    key = await admin.key(org["id"])
    assert (await admin.plane.authenticate(key["secret"])).settings.allowed_models == ["openai/*"]
    await admin.call(
        "PATCH", f"/admin/orgs/{org['id']}", {"settings": {"monthly_tool_calls": 42}}, expect=200
    )
    assert (await published()).monthly_tool_calls == 42
    principal = await admin.plane.authenticate(key["secret"])  # the cached entry was dropped
    assert principal.settings.monthly_tool_calls == 42
    await admin.call("DELETE", f"/admin/orgs/{org['id']}", expect=200)
    with pytest.raises(KeyNotFoundError):
        await kv.get(org["id"])


BAD_ORGS: list[tuple[Any, str]] = [
    ({}, "'name' is required"),
    ({"name": ""}, "'name' must be a non-empty string"),
    ({"name": "x" * 101}, "at most 100 characters"),
    ({"name": "A", "tier": "platinum"}, "unknown tier 'platinum'"),
    ({"name": "A", "color": "red"}, "unknown field 'color'"),
    ({"name": "A", "settings": {"max_contexts": -1}}, "'settings.max_contexts' must be an integer"),
    ({"name": "A", "settings": {"max_contexts": True}}, "'settings.max_contexts' must be an integer"),
    ({"name": "A", "settings": {"allowed_models": []}}, "'settings.allowed_models' must be a list"),
    ({"name": "A", "settings": {"rate_limits": {"requests_per_minute": 0}}}, "requests_per_minute' must be"),
    ({"name": "A", "settings": {"rate_limits": {"per_hour": 5}}}, "unknown field 'per_hour'"),
    (
        {"name": "A", "settings": {"rate_limits": {"requests_per_day": 3}}},
        "must not be below requests_per_minute",
    ),
    ({"name": "A", "settings": {"quota": 1}}, "unknown field 'quota' in settings"),
    ([1, 2], "must be a JSON object"),
]


@pytest.mark.parametrize("body,message", BAD_ORGS)
async def test_org_validation_errors_are_clear_400s(admin: Admin, body: Any, message: str) -> None:
    result = await admin.call("POST", "/admin/orgs", body, expect=400)
    assert result["error"]["code"] == "invalid_request"
    assert message in result["error"]["message"]


async def test_malformed_json_missing_org_and_bad_ids(admin: Admin) -> None:
    resp = await admin.client.post("/admin/orgs", data=b"{nope", headers=admin.headers)
    assert resp.status == 400 and "not valid JSON" in (await resp.json())["error"]["message"]
    missing = await admin.call("GET", "/admin/orgs/org-missing", expect=404)
    assert missing["error"]["message"] == "organization org-missing not found"
    bad = await admin.call("GET", "/admin/orgs/ORG_BAD", expect=400)
    assert "invalid org id" in bad["error"]["message"]
    badkey = await admin.call("POST", "/admin/keys/nope/revoke", expect=400)
    assert "invalid key id" in badkey["error"]["message"]
    await admin.call("POST", "/admin/keys/key-000000000000/revoke", expect=404)
    assert await admin.call("PATCH", "/admin/orgs/org-missing", {"name": "x"}, expect=404)
    await admin.call("GET", "/admin/orgs?limit=0", expect=400)


BAD_KEYS: list[tuple[dict[str, Any], str]] = [
    ({"name": "k"}, "'scopes' is required"),
    ({"name": "k", "scopes": []}, "'scopes' is required"),
    ({"name": "k", "scopes": ["admin"]}, "the 'admin' scope cannot be granted to a tenant key"),
    ({"name": "k", "scopes": ["billing:read"]}, "invalid scope 'billing:read'"),
    ({"name": "k", "scopes": ["context:delete"]}, "invalid scope 'context:delete'"),
    ({"name": "k", "scopes": ["*"], "expires_at": "tomorrow"}, "'expires_at' must be an ISO 8601 timestamp"),
    (
        {"name": "k", "scopes": ["*"], "expires_at": "2000-01-01T00:00:00Z"},
        "'expires_at' must be in the future",
    ),
    ({"scopes": ["*"]}, "'name' is required"),
    ({"name": "k", "scopes": ["*"], "tags": "support"}, "'tags': tags must be a list"),
    ({"name": "k", "scopes": ["*"], "tags": ["Support"]}, "'tags': invalid tag 'Support'"),
    ({"name": "k", "scopes": ["*"], "tags": ["-x"]}, "invalid tag '-x'"),
    ({"name": "k", "scopes": ["*"], "tags": ["a" * 65]}, "invalid tag"),
    ({"name": "k", "scopes": ["*"], "tags": [7]}, "invalid tag '<value>'"),
    ({"name": "k", "scopes": ["*"], "tags": [f"t{i}" for i in range(17)]}, "at most 16 tags, not 17"),
    ({"name": "k", "scopes": ["*"], "labels": ["x"]}, "unknown field 'labels'"),
]


@pytest.mark.parametrize("body,message", BAD_KEYS)
async def test_key_validation_errors_are_clear_400s(admin: Admin, body: dict[str, Any], message: str) -> None:
    org = await admin.org()
    result = await admin.call("POST", f"/admin/orgs/{org['id']}/keys", body, expect=400)
    assert message in result["error"]["message"]


async def test_conflicts(admin: Admin) -> None:
    org = await admin.org()
    key = await admin.key(org["id"])
    await admin.call("POST", f"/admin/keys/{key['id']}/revoke", expect=200)
    for action in ("rotate", "suspend", "resume"):
        result = await admin.call("POST", f"/admin/keys/{key['id']}/{action}", expect=409)
        assert "revoked" in result["error"]["message"]
    await admin.call("POST", f"/admin/keys/{key['id']}/rotate", {"grace_s": -1}, expect=400)


async def test_openapi_lists_every_route(admin: Admin) -> None:
    resp = await admin.client.get("/admin/openapi.json")  # public: it is documentation
    assert resp.status == 200
    doc = await resp.json()
    assert doc["openapi"].startswith("3.1")
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    mounted = {
        (r.method, r.resource.canonical)
        for r in admin.client.app.router.routes()
        if r.resource is not None and r.method != "HEAD" and r.method != "*"
    }
    assert mounted == documented
    assert len(ROUTES) + 1 == len(documented)
    for method, path in [
        ("POST", "/admin/orgs"),
        ("DELETE", "/admin/orgs/{org_id}"),
        ("GET", "/admin/orgs/{org_id}/export"),
        ("POST", "/admin/keys/{key_id}/rotate"),
        ("GET", "/admin/usage"),
        ("GET", "/admin/audit"),
    ]:
        assert (method, path) in documented
    op = doc["paths"]["/admin/orgs/{org_id}/keys"]["post"]
    assert op["requestBody"]["content"]["application/json"]["schema"]["required"] == ["name", "scopes"]
    tags = op["requestBody"]["content"]["application/json"]["schema"]["properties"]["tags"]
    assert tags["maxItems"] == 16 and tags["items"]["pattern"] == r"^[a-z0-9][a-z0-9_.:-]{0,63}$"


async def test_large_and_oversized_bodies(admin: Admin) -> None:
    models = [f"provider/model-{i:04d}-" + "x" * 150 for i in range(100)]  # ~17 KB, several chunks
    org = await admin.org("Big", settings={"allowed_models": models})
    assert len(org["settings"]["allowed_models"]) == 100
    huge = b'{"name": "' + b"x" * (300 * 1024) + b'"}'
    resp = await admin.client.post("/admin/orgs", data=huge, headers=admin.headers)
    assert resp.status == 413
    assert "too large" in (await resp.json())["error"]["message"]
    resp = await admin.client.post("/admin/orgs", data=b'{"name": "\xff"}', headers=admin.headers)
    assert resp.status == 400 and "UTF-8" in (await resp.json())["error"]["message"]
