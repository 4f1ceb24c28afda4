"""Time as the service stores it: timezone-aware UTC, millisecond precision (as BSON keeps it)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Final

from mcpmesh.proto.errors import ErrorCode, MeshException

#: The longest duration a caller may give (100 years).
MAX_DURATION_S: Final = 100 * 365 * 24 * 3600
#: The latest time an epoch-ms value may name (9999-12-31T23:59:59.999Z).
MAX_EPOCH_MS: Final = 253_402_300_799_999


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


def parse_time(value: object, field: str) -> datetime:
    """An ISO 8601 timestamp from a caller (without an offset it is taken as UTC), within
    years 1-9999 once in UTC: the one check for every time a caller sends."""
    try:
        if not isinstance(value, str) or len(value) > 64:
            raise ValueError(value)
        return to_millis(datetime.fromisoformat(value.strip()))
    except (ValueError, OverflowError):  # overflow: year 1 or 9999 shifted out of range by its offset
        raise MeshException(
            ErrorCode.INVALID_REQUEST,
            f"{field} must be an ISO 8601 timestamp between the years 1 and 9999 (UTC), "
            "such as 2026-01-31T12:00:00Z",
        ) from None


def parse_duration(value: object, field: str) -> timedelta:
    """A duration in seconds from a caller: a finite number above 0 and at most MAX_DURATION_S,
    so that `now + duration` is always a valid time."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0 < value <= MAX_DURATION_S
    ):
        raise MeshException(
            ErrorCode.INVALID_REQUEST,
            f"{field} must be a number of seconds above 0 and at most {MAX_DURATION_S} (100 years)",
        )
    return timedelta(seconds=value)


def seconds_ago(now: datetime, seconds: float) -> datetime:
    return now - timedelta(seconds=seconds)
