"""The SSRF rule for tenant-given URLs (mcpmesh.service.ssrf): checked URLs and guarded fetches
against real local HTTP servers (on 127.0.0.1 and 127.0.0.2, both loopback)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from mcpmesh.proto.errors import ErrorCode, MeshException
from mcpmesh.service.ssrf import check_url, fetch, networks

ONLY_127_0_0_1 = networks(["127.0.0.1/32"], "test")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Site:
    server: TestServer
    hits: list[str] = field(default_factory=list)

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))


async def _site(host: str, routes: dict[str, Handler]) -> Site:
    app = web.Application()
    site = Site(TestServer(app, host=host))

    def counted(handler: Handler) -> Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            site.hits.append(request.path)
            return await handler(request)

        return handle

    for path, handler in routes.items():
        app.router.add_get(path, counted(handler))
    await site.server.start_server()
    return site


@pytest.fixture
async def sites() -> AsyncIterator[tuple[Site, Site]]:
    """`main` on 127.0.0.1 (the allowed network in these tests), `inner` on 127.0.0.2 (not)."""
    release = asyncio.Event()

    async def text(request: web.Request) -> web.StreamResponse:
        return web.Response(text="héllo", content_type="text/plain", charset="latin-1")

    async def big(request: web.Request) -> web.StreamResponse:
        return web.Response(body=b"x" * 5000, content_type="text/plain")

    async def streamed(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()  # chunked: no Content-Length to refuse early
        await response.prepare(request)
        for _ in range(10):
            await response.write(b"y" * 1000)
        await response.write_eof()
        return response

    async def slow(request: web.Request) -> web.StreamResponse:
        await release.wait()
        return web.Response(text="late")

    async def missing(request: web.Request) -> web.StreamResponse:
        return web.Response(status=404)

    inner = await _site("127.0.0.2", {"/secret": text})

    async def to_inner(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(inner.url("/secret"))

    async def to_text(request: web.Request) -> web.StreamResponse:
        raise web.HTTPMovedPermanently("/text")

    async def loop(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/loop")

    main = await _site(
        "127.0.0.1",
        {
            "/text": text,
            "/big": big,
            "/streamed": streamed,
            "/slow": slow,
            "/missing": missing,
            "/to-inner": to_inner,
            "/to-text": to_text,
            "/loop": loop,
        },
    )
    yield main, inner
    release.set()
    await main.server.close()
    await inner.server.close()


async def _fails(coro: Awaitable[object]) -> MeshException:
    with pytest.raises(MeshException) as failed:
        await coro
    return failed.value


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/v1",
        "http://localhost:9/v1",
        "http://169.254.169.254/latest/meta-data",
        "http://10.1.2.3/v1",
        "http://192.168.0.10/",
        "http://[::1]/v1",
        "http://[fd00:ec2::254]/",
        "http://[::ffff:127.0.0.1]/",
        "http://0.0.0.0/",
    ],
)
async def test_internal_addresses_are_refused_unless_allowed(url: str) -> None:
    failure = await _fails(check_url(url, allow_private=False, what="api_base"))
    assert failure.error.code == ErrorCode.FORBIDDEN
    assert "api_base host" in failure.error.message and "public http(s)" in failure.error.message
    await check_url(url, allow_private=True)  # the operator allows private addresses
    everything = networks(["0.0.0.0/0", "::/0"], "test")
    await check_url(url, allow_private=False, allow_networks=everything)


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://example.com/x", "gopher://x/", "http:///nohost"]
)
async def test_only_http_urls_with_a_host(url: str) -> None:
    for allow_private in (False, True):
        failure = await _fails(check_url(url, allow_private=allow_private))
        assert failure.error.code == ErrorCode.INVALID_REQUEST
        failure = await _fails(fetch(url, allow_private=allow_private, max_bytes=100, timeout_s=5))
        assert failure.error.code == ErrorCode.INVALID_REQUEST


@pytest.mark.parametrize("url", ["https://key:s3cret@api.example.com/v1", "https://token@api.example.com/v1"])
async def test_credentials_in_a_url_are_refused_without_being_echoed(url: str) -> None:
    for allow_private in (False, True):
        failure = await _fails(check_url(url, allow_private=allow_private, what="api_base"))
        assert failure.error.code == ErrorCode.INVALID_REQUEST and "api_base" in failure.error.message
        assert "s3cret" not in failure.error.message and "token" not in failure.error.message


async def test_an_allowed_network_is_fetched_and_others_are_not(sites: tuple[Site, Site]) -> None:
    main, inner = sites
    got = await fetch(
        main.url("/text"), allow_private=False, allow_networks=ONLY_127_0_0_1, max_bytes=100, timeout_s=5
    )
    assert (got.body.decode(got.charset or ""), got.content_type) == ("héllo", "text/plain")
    for url in (inner.url("/secret"), main.url("/text").replace("127.0.0.1", "localhost")):
        # 127.0.0.2 is outside the allowed network; "localhost" resolves to it or ::1 (refused at resolution)
        allowed = ONLY_127_0_0_1 if "127.0.0.2" in url else ()
        failure = await _fails(
            fetch(url, allow_private=False, allow_networks=allowed, max_bytes=100, timeout_s=5)
        )
        assert failure.error.code == ErrorCode.FORBIDDEN, url
    assert inner.hits == [] and main.hits == ["/text"]


async def test_every_redirect_hop_is_checked(sites: tuple[Site, Site]) -> None:
    main, inner = sites
    allowed = {"allow_private": False, "allow_networks": ONLY_127_0_0_1, "max_bytes": 100, "timeout_s": 5}
    failure = await _fails(fetch(main.url("/to-inner"), **allowed))  # type: ignore[arg-type]
    assert failure.error.code == ErrorCode.FORBIDDEN and "127.0.0.2" in failure.error.message
    assert inner.hits == []  # never reached
    followed = await fetch(main.url("/to-text"), **allowed)  # type: ignore[arg-type]
    assert followed.url == main.url("/text") and followed.body == "héllo".encode("latin-1")
    failure = await _fails(fetch(main.url("/loop"), **{**allowed, "max_redirects": 3}))  # type: ignore[arg-type]
    assert failure.error.code == ErrorCode.INVALID_REQUEST and "more than 3" in failure.error.message
    assert main.hits.count("/loop") == 4  # the first request and three redirects, no more


async def test_size_time_and_status_are_bounded(sites: tuple[Site, Site]) -> None:
    main, _ = sites
    for path in ("/big", "/streamed"):  # declared length, then a chunked body
        failure = await _fails(fetch(main.url(path), allow_private=True, max_bytes=4000, timeout_s=5))
        assert failure.error.code == ErrorCode.LIMIT_EXCEEDED and "4000-byte" in failure.error.message, path
    assert (
        len((await fetch(main.url("/streamed"), allow_private=True, max_bytes=10_000, timeout_s=5)).body)
        == 10_000
    )
    failure = await _fails(fetch(main.url("/slow"), allow_private=True, max_bytes=100, timeout_s=0.3))
    assert failure.error.code == ErrorCode.TIMEOUT and failure.error.retryable
    failure = await _fails(fetch(main.url("/missing"), allow_private=True, max_bytes=100, timeout_s=5))
    assert failure.error.code == ErrorCode.INVALID_REQUEST and "HTTP 404" in failure.error.message


def test_bad_networks_are_refused_naming_the_setting() -> None:
    with pytest.raises(ValueError, match="SOME_SETTING"):
        networks(["10.0.0.0/33"], "SOME_SETTING")
