"""Reading a log container with the Azure Blob API (`azure-storage-blob`, aio client).

Blobs are listed under the source's prefix; with a time range, only blobs in the hourly
layout (`.../y=YYYY/m=MM/d=DD/h=HH/m=00/PT1H.json`) whose hour overlaps it are read. Each blob
is streamed chunk by chunk into a `LineSplitter`: memory is one chunk plus one analysis.
Storage failures become MeshExceptions that never carry the SAS URL or the SDK's text.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob.aio import ContainerClient

from mcpmesh.logs.analysis import LineSplitter
from mcpmesh.proto.errors import ErrorCode, MeshException

# The SDK logs request URLs at INFO (signature redacted); keep its loggers to warnings.
logging.getLogger("azure").setLevel(logging.WARNING)

DOWNLOAD_CHUNK = 4 * 1024 * 1024
_HOUR = re.compile(r"/y=(\d{4})/m=(\d{2})/d=(\d{2})/h=(\d{2})/")


def blob_hour(name: str) -> datetime | None:
    """The hour a blob in the hourly layout covers; None for any other name."""
    found = _HOUR.search("/" + name)
    if found is None:
        return None
    try:
        year, month, day, hour = (int(g) for g in found.groups())
        return datetime(year, month, day, hour, tzinfo=UTC)
    except ValueError:
        return None


@dataclass(frozen=True)
class Blob:
    name: str
    size: int


@asynccontextmanager
async def container(sas_url: str, timeout_s: float) -> AsyncIterator[ContainerClient]:
    client = ContainerClient.from_container_url(
        sas_url,
        connection_timeout=timeout_s,
        read_timeout=timeout_s,
        retry_total=2,
        # Downloads come in chunks of this size (the SDK's default first request is 32 MiB).
        max_single_get_size=DOWNLOAD_CHUNK,
        max_chunk_get_size=DOWNLOAD_CHUNK,
    )
    try:
        async with client:
            yield client
    except AzureError as exc:
        raise storage_error(exc) from None


async def list_blobs(
    client: ContainerClient, prefix: str, since: datetime | None, until: datetime | None, max_blobs: int
) -> tuple[list[Blob], int]:
    """The blobs to read, by name, and how many were left out for lying outside the hourly
    layout while a time range was given."""
    chosen: list[Blob] = []
    outside = 0
    async for props in client.list_blobs(name_starts_with=prefix or None):
        if since is not None or until is not None:
            hour = blob_hour(props.name)
            if hour is None:
                outside += 1
                continue
            if (since is not None and hour + timedelta(hours=1) <= since) or (
                until is not None and hour >= until
            ):
                continue
        chosen.append(Blob(props.name, int(props.size or 0)))
        if len(chosen) > max_blobs:
            raise MeshException(
                ErrorCode.LIMIT_EXCEEDED,
                f"the source has more than {max_blobs} blobs in that range: give a narrower since/until or prefix",
            )
    chosen.sort(key=lambda b: b.name)
    return chosen, outside


async def read_blob(
    client: ContainerClient, name: str, splitter: LineSplitter, on_chunk: Callable[[int], Awaitable[None]]
) -> None:
    """Stream one blob into `splitter`, awaiting `on_chunk(bytes)` after each chunk."""
    downloader = await client.download_blob(name)
    async for chunk in downloader.chunks():
        splitter.feed(chunk)
        await on_chunk(len(chunk))
    splitter.close()


def storage_error(exc: AzureError) -> MeshException:
    """What went wrong with the storage, in our words (the SDK's text may quote the URL)."""
    if isinstance(exc, ClientAuthenticationError) or (
        isinstance(exc, HttpResponseError) and exc.status_code in (401, 403)
    ):
        return MeshException(
            ErrorCode.FORBIDDEN,
            "the storage account refused the source's SAS URL (wrong signature, expired, or without "
            "read and list permission): add the source again with a valid container SAS URL",
        )
    if isinstance(exc, ResourceNotFoundError) or (
        isinstance(exc, HttpResponseError) and exc.status_code == 404
    ):
        return MeshException(
            ErrorCode.NOT_FOUND,
            "the source's container (or a blob in it) does not exist at the storage account: check the SAS URL",
        )
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return MeshException(
            ErrorCode.UNAVAILABLE,
            "the storage account did not answer (connection failed or timed out): try again later",
            retryable=True,
        )
    status = exc.status_code if isinstance(exc, HttpResponseError) else None
    return MeshException(
        ErrorCode.UNAVAILABLE,
        f"the storage account failed the request{f' (HTTP {status})' if status else ''}: try again later",
        retryable=True,
    )
