"""Health probes baked into every mcpmesh image (/app/probe/healthprobe.py).

    python /app/probe/healthprobe.py http /health     the gateway answers 2xx on 127.0.0.1:$GATEWAY_PORT
    python /app/probe/healthprobe.py bus <service>    this container is connected to NATS and <service>
                                                      answers a nats.micro PING on $NATS_URL

Exit status 0 = healthy, 1 = not (reason on stderr). Used by the Dockerfile HEALTHCHECKs (so
compose `depends_on: service_healthy` works) and by the k8s exec readiness probes.

A service has no HTTP port, so `bus` checks two things:
1. this container holds an ESTABLISHED TCP connection to the NATS port (read from /proc/net/tcp*
   before the probe opens its own). A PING alone would pass as soon as *any* replica answers,
   which would let a rollout go on past a replica that never connected.
2. a PING on `$SRV.PING.<service>` is answered, i.e. the service is registered on the bus and
   the credentials in NATS_URL work. The probe connects with the service's own NATS user, which
   may publish `$SRV.PING.<service>` and receive on its own inbox (`_INBOX_svc_<service>.>`).
Caveat: with a sidecar proxy that intercepts NATS traffic (service mesh), check 1 sees the proxy
instead of the NATS port: exclude port 4222 from interception.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import urllib.error
import urllib.request
from urllib.parse import urlsplit

TIMEOUT_S = 3.0


def check_http(path: str) -> str | None:
    port = os.environ.get("GATEWAY_PORT") or "8080"
    url = f"http://127.0.0.1:{port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp:
            return None if 200 <= resp.status < 300 else f"{url}: HTTP {resp.status}"
    except (urllib.error.URLError, OSError) as exc:
        return f"{url}: {exc}"


def nats_port(url: str) -> int:
    return urlsplit(url).port or 4222


def has_established_connection(port: int) -> bool | None:
    """True/False from /proc/net/tcp{,6} (state 01 = ESTABLISHED); None where /proc has no such file."""
    found_table = False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as fh:
                rows = fh.read().splitlines()[1:]
        except OSError:
            continue
        found_table = True
        for row in rows:
            fields = row.split()
            remote, state = fields[2], fields[3]
            if state == "01" and int(remote.rsplit(":", 1)[1], 16) == port:
                return True
    return False if found_table else None


async def ping(url: str, service: str) -> str | None:
    import nats
    from nats.micro.service import ServiceVerb, control_subject

    from mcpmesh.proto.ids import InvalidIdentifier
    from mcpmesh.proto.subjects import inbox_prefix

    async def quiet(_exc: Exception) -> None:  # nats-py would print a traceback; we say why below
        pass

    try:  # the user's own inbox: the only one its NATS permissions let it hear
        inbox = inbox_prefix(urlsplit(url).username or "")
    except InvalidIdentifier:
        inbox = "_INBOX"
    try:
        nc = await nats.connect(
            servers=[url],
            connect_timeout=TIMEOUT_S,
            allow_reconnect=False,
            max_reconnect_attempts=0,
            error_cb=quiet,
            inbox_prefix=inbox,
        )
    except Exception as exc:
        return f"cannot connect to NATS: {exc.__class__.__name__}"
    try:
        msg = await nc.request(control_subject(ServiceVerb.PING, service), b"", timeout=TIMEOUT_S)
        name = json.loads(msg.data).get("name")
        return None if name == service else f"PING answered by {name!r}, expected {service!r}"
    except Exception as exc:
        return f"no PING reply from {service!r}: {exc.__class__.__name__}"
    finally:
        await nc.close()


def check_bus(service: str) -> str | None:
    url = os.environ.get("NATS_URL") or "nats://127.0.0.1:4222"
    if has_established_connection(nats_port(url)) is False:
        return f"this container has no connection to NATS port {nats_port(url)} yet"
    return asyncio.run(ping(url, service))


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("http", "bus"):
        print("usage: healthprobe.py http <path> | bus <service>", file=sys.stderr)
        return 2
    problem = check_http(argv[1]) if argv[0] == "http" else check_bus(argv[1])
    if problem:
        print(f"unhealthy: {problem}", file=sys.stderr)  # never prints NATS_URL: it holds a password
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
