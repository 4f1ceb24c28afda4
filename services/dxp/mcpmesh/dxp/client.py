"""Signed requests to the DXP Deployment API, with the API's failure modes handled once.

Every request is signed (epi-hmac) with the calling org's project credentials and counted
against the project's client-side limits (`limits`). 429 waits for Retry-After (up to
`max_retry_after_s`) and retries; 502/503/504 and connection errors back off and retry only
when the request may be resent (`resend=True`: reads, and writes whose repeat changes
nothing) — a deployment start is never resent. A `success: false` body is a failure carrying
the API's messages. Failures become `MeshException`s; none carries a credential or a SAS URL.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Final
from urllib.parse import urlsplit

import httpx

from mcpmesh.dxp import limits, signing
from mcpmesh.dxp.settings import DxpSettings
from mcpmesh.proto.errors import ErrorCode, MeshException
from mcpmesh.secrets import SecretValue
from mcpmesh.store import TenantStore

logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request otherwise

RESEND_STATUSES: Final = frozenset({502, 503, 504})
MESSAGE_MAX: Final = 500


@dataclass(frozen=True)
class Project:
    """One org's project, credentials revealed for the duration of a call."""

    name: str
    project_id: str
    api_url: str
    client_key: SecretValue
    client_secret: SecretValue

    def __repr__(self) -> str:
        return f"Project({self.name!r}, {self.project_id})"


def _api_messages(response: httpx.Response) -> str:
    try:
        body = response.json()
        errors = body.get("errors") if isinstance(body, dict) else None
    except ValueError:
        errors = None
    text = "; ".join(str(e) for e in errors or [] if e)[:MESSAGE_MAX]
    return text or f"HTTP {response.status_code}"


def retry_after_s(value: str | None) -> float | None:
    """Retry-After as seconds (a number of seconds or an HTTP date); None when absent/invalid."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None


class DxpClient:
    def __init__(self, settings: DxpSettings) -> None:
        self.settings = settings
        self.http = httpx.AsyncClient(timeout=settings.timeout_s, follow_redirects=False)

    async def close(self) -> None:
        await self.http.aclose()

    async def request(
        self,
        store: TenantStore,
        project: Project,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        resend: bool,
        query: str = "",
    ) -> Any:
        """The `result` of `METHOD {api_url}projects/{project_id}/{path}` for the project."""
        base = urlsplit(project.api_url)
        path_qs = f"{base.path.rstrip('/')}/projects/{project.project_id}/{path}" + (
            f"?{query}" if query else ""
        )
        url = f"{base.scheme}://{base.netloc}{path_qs}"
        data = json.dumps(body).encode() if body is not None else b""
        s = self.settings
        delay = s.backoff_s
        for attempt in range(s.retries + 1):
            last = attempt == s.retries
            await limits.take(store, project.project_id, (s.per_minute, s.per_hour), project.name)
            auth = signing.authorization(
                project.client_key.reveal(), project.client_secret.reveal(), method, path_qs, data
            )
            headers = {"Authorization": auth, "Accept": "application/json"}
            if body is not None:
                headers["Content-Type"] = "application/json"
            try:
                response = await self.http.request(method, url, content=data, headers=headers)
            except httpx.HTTPError:
                if not resend:
                    raise _lost(method, path, project) from None
                if last:
                    raise MeshException(
                        ErrorCode.UNAVAILABLE, "the DXP API cannot be reached: retry later", retryable=True
                    ) from None
                await asyncio.sleep(delay)
                delay *= 2
                continue
            status = response.status_code
            if status == 429:
                wait = retry_after_s(response.headers.get("Retry-After"))
                wait = delay if wait is None else wait
                if last or wait > s.max_retry_after_s:
                    raise MeshException(
                        ErrorCode.RATE_LIMITED,
                        f"the DXP API is rate limiting project {project.name!r}: retry in {round(wait)} s",
                        retryable=True,
                        details={"retry_after_s": round(wait)},
                    )
                await asyncio.sleep(wait)
                continue
            if status in RESEND_STATUSES and resend and not last:
                await asyncio.sleep(delay)
                delay *= 2
                continue
            return _result(response, project, method, path, resend)
        raise AssertionError("unreachable")


def _lost(method: str, path: str, project: Project) -> MeshException:
    """A request sent once whose outcome is unknown (no answer, or a gateway error)."""
    return MeshException(
        ErrorCode.UNAVAILABLE,
        f"the DXP API did not confirm {method} {path.split('/')[0]} for project {project.name!r}; "
        "it may have been applied: look before retrying",
        retryable=False,
    )


def _result(response: httpx.Response, project: Project, method: str, path: str, resend: bool) -> Any:
    status = response.status_code
    try:
        envelope = response.json()
    except ValueError:
        envelope = None
    if 200 <= status < 300 and isinstance(envelope, dict) and envelope.get("success") is True:
        return envelope.get("result")
    what = _api_messages(response)
    if status >= 500 and not resend:  # a proxy's 502/504 may hide a start that was made
        raise _lost(method, path, project)
    if status >= 500:
        raise MeshException(
            ErrorCode.UNAVAILABLE, f"the DXP API failed ({what}): retry later", retryable=True
        )
    if status == 401:
        raise MeshException(
            ErrorCode.FORBIDDEN,
            f"the DXP API refused project {project.name!r}'s credentials ({what}): "
            "register the project again with the right client key and secret",
        )
    if status == 403:
        raise MeshException(
            ErrorCode.FORBIDDEN, f"project {project.name!r}'s API key may not do this ({what})"
        )
    if status == 404:
        raise MeshException(ErrorCode.NOT_FOUND, f"the DXP API found nothing ({what})")
    if status == 409:
        raise MeshException(ErrorCode.CONFLICT, f"the DXP API refused it ({what})")
    raise MeshException(ErrorCode.INVALID_REQUEST, f"the DXP API refused it: {what}")
