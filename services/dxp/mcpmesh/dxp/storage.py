"""Finding log blobs in a DXP log container (hourly `.../y=YYYY/m=MM/d=DD/h=HH/...` names)
through a read-only SAS link, without ever showing the link."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
)
from azure.storage.blob.aio import ContainerClient

from mcpmesh.proto.errors import ErrorCode, MeshException

logging.getLogger("azure").setLevel(logging.WARNING)  # its INFO lines carry request URLs
_HOUR: Final = re.compile(r"/y=(\d{4})/m=(\d{2})/d=(\d{2})/h=(\d{2})/")
MAX_LISTED: Final = 2000


async def hours_in_range(
    sas_url: str, since: datetime | None, until: datetime | None, timeout_s: float
) -> list[dict[str, Any]]:
    """Per hour with logs in [since, until): blobs and bytes (at most MAX_LISTED blobs read)."""
    hours: dict[datetime, dict[str, Any]] = {}
    try:
        async with ContainerClient.from_container_url(
            sas_url, connection_timeout=timeout_s, read_timeout=timeout_s, retry_total=2
        ) as client:
            listed = 0
            async for props in client.list_blobs():
                listed += 1
                if listed > MAX_LISTED:
                    break
                found = _HOUR.search("/" + props.name)
                if found is None:
                    continue
                year, month, day, hh = (int(g) for g in found.groups())
                hour = datetime(year, month, day, hh, tzinfo=UTC)
                if (since and hour + timedelta(hours=1) <= since) or (until and hour >= until):
                    continue
                entry = hours.setdefault(hour, {"hour": hour.isoformat(), "blobs": 0, "bytes": 0})
                entry["blobs"] += 1
                entry["bytes"] += int(props.size or 0)
    except (ClientAuthenticationError, ResourceNotFoundError, HttpResponseError):
        raise MeshException(
            ErrorCode.FORBIDDEN,
            "the log container refused its SAS link: try again (a fresh link is made per call)",
        ) from None
    except AzureError:
        raise MeshException(
            ErrorCode.UNAVAILABLE, "the log storage did not answer: try again later", retryable=True
        ) from None
    return [hours[h] for h in sorted(hours)]
