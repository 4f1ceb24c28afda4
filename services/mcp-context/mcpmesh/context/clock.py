"""Time as the service stores it: timezone-aware UTC, millisecond precision (as BSON keeps it)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mcpmesh.proto.errors import ErrorCode, MeshException


def utcnow() -> datetime:
    return to_millis(datetime.now(UTC))


def to_millis(value: datetime) -> datetime:
    value = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    value = value.astimezone(UTC)
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def iso(value: datetime | None) -> str | None:
    """ISO 8601 with a `Z`, e.g. 2026-01-02T03:04:05.678Z."""
    if value is None:
        return None
    value = to_millis(value)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def epoch_ms(value: datetime) -> int:
    return int(to_millis(value).timestamp() * 1000 + 0.5)


def from_epoch_ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, UTC)


def parse_time(value: str, field: str) -> datetime:
    """An ISO 8601 timestamp from a caller; without an offset it is taken as UTC."""
    try:
        parsed = datetime.fromisoformat(value.strip())
    except (ValueError, AttributeError):
        raise MeshException(
            ErrorCode.INVALID_REQUEST,
            f"{field} must be an ISO 8601 timestamp such as 2026-01-31T12:00:00Z",
        ) from None
    return to_millis(parsed)


def seconds_ago(now: datetime, seconds: float) -> datetime:
    return now - timedelta(seconds=seconds)
