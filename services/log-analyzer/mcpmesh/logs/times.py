"""Times a caller sends: one check, to Unix minutes (what an analysis filters on)."""

from __future__ import annotations

from datetime import UTC, datetime

from mcpmesh.proto.errors import ErrorCode, MeshException


def parse_time(value: str, field: str) -> datetime:
    """An ISO 8601 time (no offset: UTC) → an aware UTC datetime; `invalid_request` otherwise."""
    try:
        if len(value) > 64:
            raise ValueError(value)
        moment = datetime.fromisoformat(value.strip())
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError):
        raise MeshException(
            ErrorCode.INVALID_REQUEST,
            f"{field} must be an ISO 8601 time such as 2026-11-30T09:00:00Z",
        ) from None


def time_range(since: str | None, until: str | None) -> tuple[datetime | None, datetime | None]:
    start = None if since is None else parse_time(since, "since")
    end = None if until is None else parse_time(until, "until")
    if start is not None and end is not None and end <= start:
        raise MeshException(ErrorCode.INVALID_REQUEST, "until must be later than since")
    return start, end


def minute(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp()) // 60
