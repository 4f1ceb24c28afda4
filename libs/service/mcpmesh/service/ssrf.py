"""Requests to addresses a tenant gives (an org's LLM endpoint, a document's URL) are an SSRF
risk. The rule, one for every service: only http(s), and never a host that resolves to an
address inside the deployment — loopback, private, link-local (cloud metadata: 169.254.169.254,
fd00:ec2::254), reserved, multicast — unless the operator allows private addresses
(`allow_private`: all of them; `allow_networks`: those in some networks, e.g. an intranet's).

A URL carrying credentials (`user:password@host`) is refused: URLs are kept and shown.
`check_url` checks a URL now, on what its host resolves to now (a URL saved for later is checked
again when used). `fetch` GETs one: it checks every hop (redirects are followed by hand),
connects only to the addresses it checked (the resolver refuses, so a name cannot resolve to a
public address for the check and to an internal one for the connection), and bounds the size and
the time."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Collection
from dataclasses import dataclass
from typing import Final, TypeAlias
from urllib.parse import SplitResult, urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from mcpmesh.proto.errors import ErrorCode, MeshException

Network: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network
REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})
_READ_CHUNK: Final = 64 * 1024


def internal(address: str) -> bool:
    """True for an address inside a deployment (anything but a global unicast address)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    return not ip.is_global or ip.is_multicast


def networks(values: Collection[str], what: str) -> tuple[Network, ...]:
    """CIDR networks from settings (ValueError naming `what` for a bad one)."""
    try:
        return tuple(ipaddress.ip_network(value, strict=False) for value in values)
    except ValueError:
        raise ValueError(f'{what}: expected CIDR networks like "10.20.0.0/16"') from None


def _forbidden(address: str, allow_networks: Collection[Network]) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    return internal(address) and not any(ip in network for network in allow_networks)


def _refused(what: str, host: str) -> MeshException:
    return MeshException(
        ErrorCode.FORBIDDEN,
        f"{what} host {host!r} resolves to a loopback, private, link-local or reserved address: "
        f"{what} must be a public http(s) address",
        retryable=False,
    )


def _parts(url: str, what: str) -> SplitResult:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise MeshException(
            ErrorCode.INVALID_REQUEST, f"{what} must be an http:// or https:// URL with a host"
        )
    if parts.username is not None or parts.password is not None:  # kept and shown with the URL
        raise MeshException(
            ErrorCode.INVALID_REQUEST,
            f"{what} must not carry a user name or password (user:password@host): a URL is kept and "
            "shown as given, so it is no place for credentials",
        )
    return parts


def _literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


async def check_url(
    url: str, *, allow_private: bool, allow_networks: Collection[Network] = (), what: str = "url"
) -> None:
    """Raise unless `url` is http(s) (INVALID_REQUEST) to a host resolving only to public or
    allowed addresses (FORBIDDEN; UNAVAILABLE when it does not resolve)."""
    parts = _parts(url, what)
    host = parts.hostname or ""
    if allow_private:
        return
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, parts.port or 443, type=socket.SOCK_STREAM)
    except OSError:
        raise MeshException(
            ErrorCode.UNAVAILABLE, f"{what} host {host!r} does not resolve: check it", retryable=True
        ) from None
    if any(_forbidden(str(info[4][0]), allow_networks) for info in infos):
        raise _refused(what, host)


class _CheckedResolver(AbstractResolver):
    """Resolves as usual, then refuses a host with any forbidden address (at connect time)."""

    def __init__(self, allow_networks: Collection[Network], what: str) -> None:
        self._allow = allow_networks
        self._what = what
        self._inner = ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        if any(_forbidden(result["host"], self._allow) for result in found):
            raise _refused(self._what, host)
        return found

    async def close(self) -> None:
        await self._inner.close()


@dataclass(frozen=True)
class Fetched:
    url: str  # after redirects
    content_type: str  # the media type, lowercased (aiohttp's application/octet-stream if none)
    charset: str | None
    body: bytes


async def fetch(
    url: str,
    *,
    allow_private: bool,
    allow_networks: Collection[Network] = (),
    max_bytes: int,
    timeout_s: float,
    max_redirects: int = 5,
    what: str = "url",
) -> Fetched:
    """GET `url` under the rule above: at most `max_bytes` of (decoded) body, `timeout_s` in all,
    `max_redirects` redirects, each hop checked. Failures are MeshExceptions saying what went wrong."""
    resolver = None if allow_private else _CheckedResolver(allow_networks, what)
    try:
        async with asyncio.timeout(timeout_s):
            connector = aiohttp.TCPConnector(resolver=resolver, use_dns_cache=False)
            async with aiohttp.ClientSession(connector=connector, trust_env=False) as session:
                for _ in range(max_redirects + 1):
                    parts = _parts(url, what)
                    host = parts.hostname or ""
                    if not allow_private and _literal(host) and _forbidden(host, allow_networks):
                        raise _refused(what, host)  # an address literal never reaches the resolver
                    async with session.get(url, allow_redirects=False) as response:
                        if response.status in REDIRECTS and "Location" in response.headers:
                            url = urljoin(url, response.headers["Location"])
                            continue
                        return await _read(response, what, max_bytes, host)
                raise MeshException(
                    ErrorCode.INVALID_REQUEST, f"{what} redirects more than {max_redirects} times"
                )
    except TimeoutError:
        raise MeshException(
            ErrorCode.TIMEOUT, f"fetching the {what} took longer than {timeout_s:g} s", retryable=True
        ) from None
    except aiohttp.InvalidURL:
        raise MeshException(ErrorCode.INVALID_REQUEST, f"{what} is not a valid URL") from None
    except aiohttp.ClientError:
        raise MeshException(
            ErrorCode.UNAVAILABLE, f"the {what} could not be fetched: its host did not answer", retryable=True
        ) from None


async def _read(response: aiohttp.ClientResponse, what: str, max_bytes: int, host: str) -> Fetched:
    if response.status != 200:
        busy = response.status >= 500 or response.status == 429
        raise MeshException(
            ErrorCode.UNAVAILABLE if busy else ErrorCode.INVALID_REQUEST,
            f"{what} host {host!r} answered HTTP {response.status}",
            retryable=busy,
        )
    too_big = MeshException(
        ErrorCode.LIMIT_EXCEEDED, f"the {what}'s content is over the {max_bytes}-byte limit", retryable=False
    )
    if response.content_length is not None and response.content_length > max_bytes:
        raise too_big
    body = bytearray()
    async for piece in response.content.iter_chunked(_READ_CHUNK):
        body += piece
        if len(body) > max_bytes:
            raise too_big
    return Fetched(str(response.url), response.content_type.lower(), response.charset, bytes(body))
