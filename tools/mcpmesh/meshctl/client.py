"""The admin API over urllib: where it is, the admin key, and JSON requests with clear errors."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any


class CliError(Exception):
    """One sentence for the user; `code` is the exit status."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def dev_facts() -> dict[str, Any]:
    """`.mesh/dev.json` written by `./mesh up`, if there is one."""
    state = os.environ.get("MCPMESH_STATE_DIR")
    path = Path(state) / "dev.json" if state else Path(__file__).resolve().parents[3] / ".mesh" / "dev.json"
    try:
        facts: dict[str, Any] = json.loads(path.read_text())
        return facts
    except (OSError, ValueError):
        return {}


class AdminClient:
    def __init__(self, base_url: str, admin_key: str, timeout: float = 60.0) -> None:
        base = base_url.rstrip("/")
        self.base = base if base.endswith("/admin") else base + "/admin"
        self.admin_key = admin_key
        self.timeout = timeout

    @classmethod
    def from_env(cls) -> AdminClient:
        facts = dev_facts()
        url = os.environ.get("MESH_ADMIN_URL") or facts.get("admin_url")
        key = os.environ.get("MESH_ADMIN_KEY") or facts.get("admin_key")
        if not url or not key:
            raise CliError(
                "no admin API configured: set MESH_ADMIN_URL and MESH_ADMIN_KEY, or start `./mesh up` "
                "(which writes .mesh/dev.json)",
                code=2,
            )
        return cls(url, key)

    def request(self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None) -> Any:
        url = self.base + path
        params = {k: v for k, v in (query or {}).items() if v is not None and v != ""}
        if params:
            url += "?" + urllib.parse.urlencode(params)
        data = json.dumps(body).encode() if body is not None else None
        headers = {"authorization": f"Bearer {self.admin_key}", "accept": "application/json"}
        if data is not None:
            headers["content-type"] = "application/json"
        req = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise CliError(_error_text(exc)) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise CliError(f"cannot reach the admin API at {self.base}: {reason}", code=2) from None


def _error_text(exc: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(exc.read())
        error = body["error"]
        message = f"{error['message']} (HTTP {exc.code})"
        services = error.get("services")
        if services:
            lines = [
                f"  {name}: {'ok' if r.get('ok') else r.get('error', {}).get('message')}"
                for name, r in services.items()
            ]
            message += "\n" + "\n".join(lines)
        return message
    except (ValueError, KeyError, TypeError):
        return f"the admin API answered HTTP {exc.code} {exc.reason}"
