"""Checking admin API input: org names, tiers, settings overrides, scopes, key names, times.

Every check raises `ApiError` 400 with a sentence saying which field is wrong and what
is expected; none echoes a long value back.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

import msgspec

from mcpmesh.gateway.control.errors import bad_request
from mcpmesh.proto.ids import SERVICES, InvalidIdentifier
from mcpmesh.proto.tiers import TIERS, OrgSettings
from mcpmesh.tenancy.apikeys import check_key_tags

MAX_NAME = 100
_MAX_COUNT = 10**12

#: Overridable settings: name -> (type, minimum). `rate_limits` holds the two nested ones.
_INT_SETTINGS: Final = {
    "max_contexts": 0,
    "max_tokens_per_context": 1,
    "monthly_tool_calls": 0,
    "monthly_llm_tokens": 0,
}
_RATE_SETTINGS: Final = {"requests_per_minute": 1, "requests_per_day": 1}
SETTING_NAMES: Final = (*_INT_SETTINGS, "monthly_llm_cost_usd", "allowed_models", "rate_limits")


def now() -> datetime:
    """UTC, to the millisecond (what MongoDB keeps), so a stored time reads back unchanged."""
    stamp = datetime.now(UTC)
    return stamp.replace(microsecond=stamp.microsecond // 1000 * 1000)


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:  # a naive datetime is UTC (the store itself returns them aware)
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"<{type(value).__name__}>"


def body_object(body: object) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object")
    return body


def reject_unknown(body: dict[str, Any], allowed: tuple[str, ...], what: str) -> None:
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise bad_request(
            f"unknown field {_shown(unknown[0])} in {what}: expected any of {', '.join(allowed)}"
        )


def name_field(body: dict[str, Any], *, required: bool, what: str) -> str | None:
    if "name" not in body:
        if required:
            raise bad_request(f"'name' is required: the {what}'s display name (1-{MAX_NAME} characters)")
        return None
    value = body["name"]
    if not isinstance(value, str) or not value.strip() or len(value.strip()) > MAX_NAME:
        raise bad_request(f"'name' must be a non-empty string of at most {MAX_NAME} characters")
    return value.strip()


def tier_field(body: dict[str, Any], *, default: str | None) -> str | None:
    if "tier" not in body:
        return default
    value = body["tier"]
    if value not in TIERS:
        raise bad_request(f"unknown tier {_shown(value)}: expected one of {', '.join(TIERS)}")
    return str(value)


def _count(value: object, field: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= _MAX_COUNT:
        raise bad_request(f"'{field}' must be an integer between {minimum} and {_MAX_COUNT}")
    return value


def _dollars(value: object, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= _MAX_COUNT:
        raise bad_request(f"'{field}' must be a number of US dollars between 0 and {_MAX_COUNT}")
    return float(value)


def _models(value: object) -> list[str]:
    if isinstance(value, list) and 0 < len(value) <= 100:
        names = [m for m in value if isinstance(m, str) and 0 < len(m) <= 200 and m.strip() == m]
        if len(names) == len(value):
            return sorted(set(names))
    raise bad_request(
        "'settings.allowed_models' must be a list of 1-100 model names or patterns, e.g. [\"openai/*\"]"
    )


def settings_patch(current: dict[str, Any], patch: object) -> dict[str, Any]:
    """The org's new overrides: `patch` merged onto `current`; a null value drops that override."""
    if not isinstance(patch, dict):
        raise bad_request("'settings' must be a JSON object of settings to override")
    reject_unknown(patch, SETTING_NAMES, "settings")
    merged = {k: v for k, v in current.items() if k in SETTING_NAMES}
    for field, value in patch.items():
        if value is None:
            merged.pop(field, None)
        elif field in _INT_SETTINGS:
            merged[field] = _count(value, f"settings.{field}", _INT_SETTINGS[field])
        elif field == "allowed_models":
            merged[field] = _models(value)
        elif field == "monthly_llm_cost_usd":
            merged[field] = _dollars(value, f"settings.{field}")
        else:  # rate_limits
            if not isinstance(value, dict):
                raise bad_request("'settings.rate_limits' must be a JSON object")
            reject_unknown(value, tuple(_RATE_SETTINGS), "settings.rate_limits")
            limits = dict(merged.get("rate_limits") or {})
            for name, limit in value.items():
                if limit is None:
                    limits.pop(name, None)
                else:
                    limits[name] = _count(limit, f"settings.rate_limits.{name}", _RATE_SETTINGS[name])
            if limits:
                merged["rate_limits"] = limits
            else:
                merged.pop("rate_limits", None)
    return merged


def effective_settings(tier: str, overrides: dict[str, Any]) -> OrgSettings:
    """Tier defaults overlaid with the org's own overrides."""
    base: dict[str, Any] = msgspec.to_builtins(TIERS.get(tier, TIERS["free"]))
    for field, value in overrides.items():
        if field == "rate_limits" and isinstance(value, dict):
            base["rate_limits"] = {**base["rate_limits"], **value}
        elif field in SETTING_NAMES:
            base[field] = value
    return msgspec.convert(base, OrgSettings)


def check_limits_consistent(settings: OrgSettings) -> None:
    limits = settings.rate_limits
    if limits.requests_per_day < limits.requests_per_minute:
        raise bad_request(
            "'settings.rate_limits.requests_per_day' must not be below requests_per_minute "
            f"(would be {limits.requests_per_day} < {limits.requests_per_minute})"
        )


def scopes_field(body: dict[str, Any]) -> list[str]:
    value = body.get("scopes")
    if not isinstance(value, list) or not value or not all(isinstance(s, str) for s in value):
        raise bad_request(
            '\'scopes\' is required: a non-empty list such as ["*"] or ["context:read", "llm:*"]'
        )
    for scope in value:
        if scope == "admin":
            raise bad_request("the 'admin' scope cannot be granted to a tenant key")
        if scope == "*":
            continue
        service, sep, access = scope.partition(":")
        if not sep or service not in SERVICES or access not in ("read", "write", "*"):
            raise bad_request(
                f"invalid scope {_shown(scope)}: expected '*' or '<service>:read|write|*' "
                f"with service one of {', '.join(SERVICES)}"
            )
    return sorted(set(value))


def tags_field(body: dict[str, Any]) -> list[str]:
    """A key's optional tags (none when left out)."""
    try:
        return check_key_tags(body.get("tags") or [])
    except InvalidIdentifier as exc:
        raise bad_request(f"'tags': {exc}") from None


def time_field(body: dict[str, Any], field: str, *, future: bool = False) -> datetime | None:
    value = body.get(field)
    if value is None:
        return None
    parsed = parse_time(value, field)
    if future and parsed <= now():
        raise bad_request(f"'{field}' must be in the future")
    return parsed


def parse_time(value: object, field: str) -> datetime:
    """An ISO 8601 timestamp (a zone-less one is taken as UTC)."""
    if isinstance(value, str) and len(value) <= 40:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            pass
        else:
            return aware(parsed)
    raise bad_request(f"'{field}' must be an ISO 8601 timestamp, e.g. 2026-01-31T00:00:00Z")


def seconds_field(body: dict[str, Any], field: str, *, default: float, maximum: float) -> float:
    value = body.get(field, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= maximum:
        raise bad_request(f"'{field}' must be a number of seconds between 0 and {maximum:g}")
    return float(value)
