"""JSON Schemas of the admin API's bodies, for the OpenAPI document."""

from __future__ import annotations

from typing import Any, Final

from mcpmesh.proto.ids import ORG_ID_PATTERN, SERVICES
from mcpmesh.proto.tiers import TIERS
from mcpmesh.tenancy.apikeys import KEY_TAG_PATTERN, MAX_KEY_TAGS

KEY_ID_PATTERN: Final = r"^key-[a-z0-9]{12}$"
USAGE_GROUPS: Final = (
    "org_id", "key_id", "service", "method", "tool", "llm_model", "llm_billed_to", "hour", "day"
)  # fmt: skip

STR: Final = {"type": "string"}
TIME: Final = {"type": "string", "format": "date-time"}
NULL_TIME: Final = {"type": ["string", "null"], "format": "date-time"}
INT: Final = {"type": "integer", "minimum": 0}


def obj(props: dict[str, Any], required: tuple[str, ...] = (), *, extra: bool = False) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": extra}
    if required:
        schema["required"] = list(required)
    return schema


def page(item: dict[str, Any]) -> dict[str, Any]:
    return obj({"items": {"type": "array", "items": item}, "next_cursor": {"type": ["string", "null"]}})


def items(item: dict[str, Any]) -> dict[str, Any]:
    return obj({"items": {"type": "array", "items": item}})


RATE_LIMITS: Final = obj({"requests_per_minute": INT, "requests_per_day": INT})
SETTINGS: Final = obj(
    {
        "max_contexts": INT,
        "max_tokens_per_context": INT,
        "allowed_models": {"type": "array", "items": STR},
        "rate_limits": RATE_LIMITS,
        "monthly_tool_calls": INT,
        "monthly_llm_tokens": {"type": ["integer", "null"]},
        "monthly_llm_cost_usd": {"type": ["number", "null"]},
    }
)
SETTINGS_PATCH: Final = obj(
    {
        "max_contexts": {"type": ["integer", "null"], "minimum": 0},
        "max_tokens_per_context": {"type": ["integer", "null"], "minimum": 1},
        "allowed_models": {"type": ["array", "null"], "items": STR, "minItems": 1},
        "rate_limits": obj(
            {
                "requests_per_minute": {"type": ["integer", "null"], "minimum": 1},
                "requests_per_day": {"type": ["integer", "null"], "minimum": 1},
            }
        ),
        "monthly_tool_calls": {"type": ["integer", "null"], "minimum": 0},
        "monthly_llm_tokens": {"type": ["integer", "null"], "minimum": 0},
        "monthly_llm_cost_usd": {"type": ["number", "null"], "minimum": 0},
    }
)
TIER: Final = {"type": "string", "enum": list(TIERS)}
NAME: Final = {"type": "string", "minLength": 1, "maxLength": 100}

ORG: Final = obj(
    {
        "id": {"type": "string", "pattern": ORG_ID_PATTERN},
        "name": STR,
        "tier": TIER,
        "status": {"type": "string", "enum": ["active", "suspended", "deleting"]},
        "settings": SETTINGS,
        "overrides": {"type": "object"},
        "created_at": TIME,
        "updated_at": TIME,
    }
)
ORG_CREATE: Final = obj({"name": NAME, "tier": TIER, "settings": SETTINGS_PATCH}, ("name",))
ORG_UPDATE: Final = obj({"name": NAME, "tier": TIER, "settings": SETTINGS_PATCH})
SERVICE_RESULT: Final = obj(
    {"ok": {"type": "boolean"}, "dropped": {"type": "array", "items": STR}, "error": {"type": "object"}}
)
ORG_DELETED: Final = obj(
    {
        "id": STR,
        "deleted": {"type": "boolean"},
        "services": {"type": "object", "additionalProperties": SERVICE_RESULT},
        "control_rows": {"type": "object", "additionalProperties": INT},
        "collections": {"type": "array", "items": STR},
    }
)

SCOPE: Final = {
    "type": "string",
    "description": "'*' or '<service>:read|write|*', service one of " + ", ".join(SERVICES),
}
TAGS: Final = {
    "type": "array",
    "items": {"type": "string", "pattern": KEY_TAG_PATTERN},
    "maxItems": MAX_KEY_TAGS,
    "uniqueItems": True,
    "description": "labels signed into the key's stamps (services may grant by them); never secret",
}
KEY: Final = obj(
    {
        "id": {"type": "string", "pattern": KEY_ID_PATTERN},
        "org_id": STR,
        "name": STR,
        "scopes": {"type": "array", "items": SCOPE},
        "tags": TAGS,
        "status": {"type": "string", "enum": ["active", "suspended", "revoked", "expired"]},
        "created_at": TIME,
        "expires_at": NULL_TIME,
        "last_used_at": NULL_TIME,
        "rotated_at": NULL_TIME,
    }
)
KEY_WITH_SECRET: Final = {
    **KEY,
    "properties": {
        **KEY["properties"],
        "secret": {"type": "string", "description": "the API key: shown once"},
        "secret_note": STR,
        "previous_secret_valid_until": NULL_TIME,
    },
}
KEY_CREATE: Final = obj(
    {
        "name": NAME,
        "scopes": {"type": "array", "items": SCOPE, "minItems": 1},
        "tags": TAGS,
        "expires_at": TIME,
    },
    ("name", "scopes"),
)
KEY_ROTATE: Final = obj(
    {"grace_s": {"type": "number", "minimum": 0, "description": "default: the gateway's key grace"}}
)

USAGE_ROW: Final = obj(
    {
        **{g: STR for g in USAGE_GROUPS},
        **{
            f: {"type": "number"}
            for f in (
                "calls",
                "errors",
                "latency_ms_sum",
                "latency_ms_avg",
                "bytes_in",
                "bytes_out",
                "llm_prompt_tokens",
                "llm_completion_tokens",
                "llm_cached_tokens",
                "llm_cost_usd",
            )
        },
    }
)
USAGE: Final = obj(
    {
        "filters": {"type": "object"},
        "since": NULL_TIME,
        "until": NULL_TIME,
        "group_by": {"type": "array", "items": STR},
        "totals": USAGE_ROW,
        "groups": {"type": "array", "items": USAGE_ROW},
    }
)
AUDIT: Final = obj(
    {
        "id": STR,
        "org_id": STR,
        "ts": TIME,
        "actor": STR,
        "action": STR,
        "target": {"type": ["string", "null"]},
        "outcome": STR,
        "request_id": {"type": ["string", "null"]},
        "detail": {"type": "object", "additionalProperties": STR},
    }
)
ORG_EXPORT: Final = obj(
    {
        "org": ORG,
        "keys": {"type": "array", "items": KEY},
        "usage": {"type": "array", "items": USAGE_ROW},
        "audit": {"type": "array", "items": AUDIT},
        "services": {"type": "object"},
        "complete": {"type": "boolean"},
        "error": {"type": "object"},
    }
)
SECRET_NAME_PATTERN: Final = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
SECRET_INFO: Final = obj(
    {
        "name": {"type": "string", "pattern": SECRET_NAME_PATTERN},
        "fingerprint": {"type": "string", "description": "'sha256:' + 16 hex digits: tells two values apart"},
        "last4": {"type": ["string", "null"], "description": "last 4 characters of values of 16+"},
        "key_id": {"type": "string", "description": "the master key that sealed it"},
        "created_at": TIME,
        "updated_at": TIME,
    }
)
SECRET_PUT: Final = obj(
    {"value": {"type": "string", "minLength": 1, "maxLength": 16384, "writeOnly": True}}, ("value",)
)
SECRET_DELETED: Final = obj({"name": STR, "deleted": {"type": "boolean"}})

ERROR: Final = obj(
    {"error": obj({"code": STR, "message": STR}, ("code", "message"), extra=True)}, ("error",), extra=True
)
