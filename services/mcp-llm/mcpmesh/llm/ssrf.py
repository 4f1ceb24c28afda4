"""Org endpoints are an SSRF risk: only http(s), and (unless the operator allows it) never an
address inside the deployment — loopback, private, link-local (cloud metadata), reserved.
Checked when saved and again at call time, on the addresses the host resolves to then."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from mcpmesh.proto.errors import ErrorCode, MeshException


def _refused(url_host: str, why: str) -> MeshException:
    return MeshException(
        ErrorCode.FORBIDDEN,
        f"endpoint host {url_host!r} {why}: an org endpoint must be a public http(s) address",
        retryable=False,
    )


def _internal(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    return not ip.is_global or ip.is_multicast


async def check_endpoint(url: str, *, allow_private: bool) -> None:
    """Raise FORBIDDEN unless `url` is http(s) to a public address (any address with `allow_private`)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not host:
        raise MeshException(
            ErrorCode.INVALID_REQUEST, "api_base must be an http:// or https:// URL with a host"
        )
    if allow_private:
        return
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, parts.port or 443, type=socket.SOCK_STREAM)
    except OSError:
        raise MeshException(
            ErrorCode.UNAVAILABLE, f"endpoint host {host!r} does not resolve: check api_base", retryable=True
        ) from None
    if any(_internal(str(info[4][0])) for info in infos):
        raise _refused(host, "resolves to a loopback, private, link-local or reserved address")
