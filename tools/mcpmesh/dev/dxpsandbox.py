"""A local fake of the DXP Deployment API (tests and `./mesh up`), as documented.

A dev tool (never in the dxp image): it verifies every epi-hmac signature with the service's
own definition of the scheme, `mcpmesh.dxp.signing` (a wrong
secret, a stale timestamp or a reused nonce is refused with 401), keeps each project's
deployments, exports and storage containers, and runs the deployment state machine on a
compressed clock (`step_s` per state): InProgress → AwaitingVerification (or straight to
Succeeded with `directDeploy`) → Completing → Succeeded; reset → Resetting → Reset; a package
whose name contains "fail" ends Failed. Storage containers live in an Azurite (when given):
their SAS links are real container SAS URLs, and the log containers hold generated App Service
logs (`mcpmesh.logs.demo`) of the last `log_hours` hours. `fail_next` injects faults (429 with
Retry-After, 5xx, `success: false` bodies) so the client's handling is tested for real.

    python -m mcpmesh.dev.dxpsandbox --port 8920   # prints the demo project's credentials (JSON)
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import secrets
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

from mcpmesh.dxp import signing

if TYPE_CHECKING:
    from mcpmesh.dev.azuriteproc import LocalAzurite

PREFIX: Final = "/api/v1.0"
ENVIRONMENTS: Final = ("Integration", "Preproduction", "Production")
LOG_CONTAINERS: Final = ("insights-logs-appservicehttplogs", "insights-logs-appserviceconsolelogs")
CONTAINERS: Final = (*LOG_CONTAINERS, "mysitemedia")
DATABASES: Final = ("epicms", "epicommerce")


@dataclass
class Project:
    project_id: str
    client_key: str
    client_secret: str  # base64 text


@dataclass
class Deployment:
    id: str
    project_id: str
    parameters: dict[str, Any]
    start: float
    #: (status, since) in order; the current one is the last whose time has come.
    plan: list[tuple[str, float]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def status(self, now: float) -> str:
        current = self.plan[0][0]
        for status, since in self.plan:
            if since <= now:
                current = status
        return current


@dataclass
class Fault:
    status: int
    retry_after: str | None = None
    errors: list[str] | None = None


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def _ok(result: Any, status: int = 200) -> web.Response:
    return web.json_response({"success": True, "errors": None, "result": result}, status=status)


def _fail(status: int, *errors: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(
        {"success": False, "errors": list(errors), "result": None}, status=status, headers=headers
    )


class Sandbox:
    """The fake API on 127.0.0.1 (`await start()`, `base_url`, `await stop()`)."""

    def __init__(
        self,
        *,
        step_s: float = 1.0,
        skew_s: float = 300.0,
        azurite: LocalAzurite | None = None,
        log_hours: int = 3,
        log_per_minute: int = 10,
    ) -> None:
        self.step_s = step_s
        self.skew_s = skew_s
        self.azurite = azurite
        self.log_hours = log_hours
        self.log_per_minute = log_per_minute
        self.projects: dict[str, Project] = {}
        self.deployments: dict[str, Deployment] = {}
        self.exports: dict[str, dict[str, Any]] = {}
        self.faults: deque[Fault] = deque()
        #: Every request that passed authentication: (client key, method, path).
        self.requests: list[tuple[str, str, str]] = []
        self.refused: list[str] = []
        self._nonces: dict[str, float] = {}
        self._seeded: set[str] = set()
        self._runner: web.AppRunner | None = None
        self.port = 0

    # -- set-up -----------------------------------------------------------------------------

    def add_project(self, project_id: str | None = None) -> Project:
        project = Project(
            project_id=project_id or str(uuid.uuid4()),
            client_key=secrets.token_hex(16),
            client_secret=base64.b64encode(secrets.token_bytes(32)).decode(),
        )
        self.projects[project.project_id] = project
        return project

    def fail_next(
        self, status: int, times: int = 1, *, retry_after: str | None = None, errors: list[str] | None = None
    ) -> None:
        """The next `times` authenticated requests answer `status` (200 with `errors`: a
        `success: false` body)."""
        self.faults.extend(Fault(status, retry_after, errors) for _ in range(times))

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PREFIX}/"

    def starts(self, project_id: str) -> int:
        return sum(1 for d in self.deployments.values() if d.project_id == project_id)

    async def start(self, port: int = 0) -> Sandbox:
        app = web.Application(middlewares=[self._authenticate])
        p = PREFIX + "/projects/{project}"
        env = p + "/environments/{env}"
        app.add_routes(
            [
                web.get(p + "/deployments", self._list_deployments),
                web.post(p + "/deployments", self._start_deployment),
                web.get(p + "/deployments/{id}", self._get_deployment),
                web.post(p + "/deployments/{id}/complete", self._complete),
                web.post(p + "/deployments/{id}/reset", self._reset),
                web.get(p + "/packages/location", self._package_location),
                web.post(env + "/databases/{db}/exports", self._start_export),
                web.get(env + "/databases/{db}/exports", self._list_exports),
                web.get(env + "/databases/{db}/exports/{id}", self._get_export),
                web.get(env + "/storagecontainers", self._containers),
                web.post(env + "/storagecontainers/{container}/saslink", self._sas_link),
            ]
        )
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- authentication -----------------------------------------------------------------------

    @web.middleware
    async def _authenticate(self, request: web.Request, handler: Any) -> web.StreamResponse:
        body = await request.read()
        signed = signing.parse(request.headers.get("Authorization", ""))
        project = self.projects.get(request.match_info.get("project", ""))
        refusal = self._refusal(signed, project, request.method, request.path_qs, body)
        if refusal is not None:
            self.refused.append(refusal)
            return _fail(401 if refusal != "forbidden" else 403, refusal)
        assert signed is not None
        self.requests.append((signed.client_key, request.method, request.path))
        if self.faults:
            fault = self.faults.popleft()
            if fault.status == 200:
                return _fail(200, *(fault.errors or ["The operation failed."]))
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else None
            return _fail(fault.status, f"sandbox fault {fault.status}", headers=headers)
        return await handler(request)

    def _refusal(
        self, signed: signing.Signed | None, project: Project | None, method: str, path: str, body: bytes
    ) -> str | None:
        if signed is None:
            return "missing or malformed epi-hmac Authorization header"
        owner = next((p for p in self.projects.values() if p.client_key == signed.client_key), None)
        if owner is None or not signing.verify(signed, owner.client_secret, method, path, body):
            return "invalid signature"
        now = time.time()
        if abs(now - signed.timestamp_ms / 1000) > self.skew_s:
            return "stale timestamp"
        for nonce, seen in list(self._nonces.items()):
            if now - seen > 2 * self.skew_s:
                del self._nonces[nonce]
        if signed.nonce in self._nonces:
            return "nonce already used"
        self._nonces[signed.nonce] = now
        if project is None or project is not owner:
            return "forbidden"
        return None

    # -- deployments ----------------------------------------------------------------------------

    def _view(self, d: Deployment) -> dict[str, Any]:
        now = time.time()
        status = d.status(now)
        done = status in ("Succeeded", "Failed", "Reset")
        percent = 100 if status != "InProgress" else min(99, int((now - d.start) / self.step_s * 100))
        return {
            "id": d.id,
            "projectId": d.project_id,
            "status": status,
            "startTime": _iso(d.start),
            "endTime": _iso(d.plan[-1][1]) if done else None,
            "percentComplete": percent,
            "validationLinks": [
                f"https://{d.parameters['targetEnvironment'].lower()}-slot.example.dxcloud.episerver.net/"
            ]
            if status == "AwaitingVerification"
            else [],
            "deploymentWarnings": [],
            "deploymentErrors": d.errors if status == "Failed" else [],
            "parameters": d.parameters,
        }

    def _deployment(self, request: web.Request) -> Deployment:
        d = self.deployments.get(request.match_info["id"])
        if d is None or d.project_id != request.match_info["project"]:
            raise web.HTTPNotFound(
                text=json.dumps({"success": False, "errors": ["Deployment not found."], "result": None}),
                content_type="application/json",
            )
        return d

    async def _list_deployments(self, request: web.Request) -> web.Response:
        project = request.match_info["project"]
        mine = [self._view(d) for d in self.deployments.values() if d.project_id == project]
        return _ok(sorted(mine, key=lambda v: str(v["startTime"]), reverse=True))

    async def _get_deployment(self, request: web.Request) -> web.Response:
        return _ok(self._view(self._deployment(request)))

    async def _start_deployment(self, request: web.Request) -> web.Response:
        try:
            params = json.loads(await request.read() or b"{}")
        except ValueError:
            return _fail(400, "The request body is not JSON.")
        target = params.get("targetEnvironment")
        if target not in ENVIRONMENTS:
            return _fail(400, f"Unknown target environment '{target}'.")
        if not params.get("packages") and not params.get("sourceEnvironment"):
            return _fail(400, "Either packages or sourceEnvironment must be given.")
        now = time.time()
        step = self.step_s
        d = Deployment(
            id=str(uuid.uuid4()), project_id=request.match_info["project"], parameters=params, start=now
        )
        if any("fail" in str(name).lower() for name in params.get("packages") or []):
            d.plan = [("InProgress", now), ("Failed", now + step)]
            d.errors = ["The package could not be deployed: its web.config is invalid."]
        elif params.get("directDeploy"):
            d.plan = [("InProgress", now), ("Succeeded", now + step)]
        else:
            d.plan = [("InProgress", now), ("AwaitingVerification", now + step)]
        self.deployments[d.id] = d
        return _ok(self._view(d), status=202)

    async def _complete(self, request: web.Request) -> web.Response:
        d = self._deployment(request)
        now = time.time()
        if d.status(now) != "AwaitingVerification":
            return _fail(
                400,
                f"The deployment is {d.status(now)}: only a deployment awaiting verification can be completed.",
            )
        d.plan = [*d.plan[:1], ("Completing", now), ("Succeeded", now + self.step_s)]
        return _ok(self._view(d))

    async def _reset(self, request: web.Request) -> web.Response:
        d = self._deployment(request)
        now = time.time()
        status = d.status(now)
        if status in ("Succeeded", "Reset", "Resetting", "Completing"):
            return _fail(400, f"The deployment is {status}: it cannot be reset.")
        d.parameters = {
            **d.parameters,
            "resetWithDbRollback": bool(json.loads(await request.read() or b"{}").get("resetWithDbRollback")),
        }
        d.plan = [*d.plan[:1], ("Resetting", now), ("Reset", now + self.step_s)]
        return _ok(self._view(d))

    async def _package_location(self, request: web.Request) -> web.Response:
        return _ok(
            {
                "location": self._container_url(
                    request.match_info["project"], "Integration", "deploymentpackages", "rwl"
                )
            }
        )

    # -- exports ------------------------------------------------------------------------------

    def _env_db(self, request: web.Request) -> tuple[str, str]:
        env, db = request.match_info["env"], request.match_info.get("db", "epicms")
        if env not in ENVIRONMENTS:
            raise web.HTTPNotFound(
                text=json.dumps(
                    {"success": False, "errors": [f"Environment '{env}' not found."], "result": None}
                ),
                content_type="application/json",
            )
        if db not in DATABASES:
            raise web.HTTPBadRequest(
                text=json.dumps({"success": False, "errors": [f"Unknown database '{db}'."], "result": None}),
                content_type="application/json",
            )
        return env, db

    def _export_view(self, e: dict[str, Any]) -> dict[str, Any]:
        done = time.time() >= e["ready_at"]
        view = {k: v for k, v in e.items() if k not in ("ready_at", "project")}
        view["status"] = "Succeeded" if done else "InProgress"
        if done:
            view["downloadLink"] = (
                self._container_url(e["project"], e["environment"], "bacpacs", "r")
                + f"&blob={e['id']}.bacpac"
            )
        return view

    async def _start_export(self, request: web.Request) -> web.Response:
        env, db = self._env_db(request)
        export = {
            "id": str(uuid.uuid4()),
            "project": request.match_info["project"],
            "environment": env,
            "databaseName": db,
            "retentionHours": json.loads(await request.read() or b"{}").get("retentionHours", 24),
            "startTime": _iso(time.time()),
            "ready_at": time.time() + self.step_s,
        }
        self.exports[export["id"]] = export
        return _ok(self._export_view(export), status=202)

    async def _list_exports(self, request: web.Request) -> web.Response:
        env, db = self._env_db(request)
        project = request.match_info["project"]
        mine = [
            self._export_view(e)
            for e in self.exports.values()
            if (e["project"], e["environment"], e["databaseName"]) == (project, env, db)
        ]
        return _ok(mine)

    async def _get_export(self, request: web.Request) -> web.Response:
        env, db = self._env_db(request)
        e = self.exports.get(request.match_info["id"])
        if e is None or (e["project"], e["environment"], e["databaseName"]) != (
            request.match_info["project"],
            env,
            db,
        ):
            return _fail(404, "Export not found.")
        return _ok(self._export_view(e))

    # -- storage --------------------------------------------------------------------------------

    def azurite_container(self, project_id: str, env: str, container: str) -> str:
        """The Azurite container behind a project's environment's container (one account for all)."""
        return f"p{project_id.replace('-', '')[:8]}-{env[:4].lower()}-{container}"[:63]

    def _container_url(self, project_id: str, env: str, container: str, permission: str) -> str:
        if self.azurite is None:
            sig = secrets.token_urlsafe(16)
            return f"https://sandbox.blob.example/{self.azurite_container(project_id, env, container)}?sp={permission}&sig={sig}"
        name = self.azurite_container(project_id, env, container)
        self._seed(project_id, env, container, name)
        return self.azurite.container_sas_url(name, permission=permission)

    def _seed(self, project_id: str, env: str, container: str, name: str) -> None:
        """Create the container once; a log container gets generated App Service logs."""
        assert self.azurite is not None
        if name in self._seeded:
            return
        self._seeded.add(name)
        blobs: list[tuple[str, bytes]] = []
        if container in LOG_CONTAINERS:
            from mcpmesh.logs.demo import DemoSpec, hourly_blobs

            now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
            hours = self.log_hours
            # Production's latest hour carries an error burst: compare(before, after) has a finding.
            burst = ((hours - 1) * 60 + 5, (hours - 1) * 60 + 25) if env == "Production" else None
            spec = DemoSpec(
                start=now - timedelta(hours=hours - 1),
                hours=hours,
                per_minute=self.log_per_minute,
                burst=burst,
            )
            blobs = list(hourly_blobs(spec))
        self.azurite.upload(name, blobs)

    async def _containers(self, request: web.Request) -> web.Response:
        self._env_db(request)
        writable = request.query.get("writable", "").lower() == "true"
        return _ok({"storageContainers": ["mysitemedia"] if writable else list(CONTAINERS)})

    async def _sas_link(self, request: web.Request) -> web.Response:
        env, _ = self._env_db(request)
        container = request.match_info["container"]
        if container not in CONTAINERS:
            return _fail(404, f"Storage container '{container}' not found.")
        body = json.loads(await request.read() or b"{}")
        writable = bool(body.get("Writable"))
        if writable and container in LOG_CONTAINERS:
            return _fail(400, "Log containers cannot be written.")
        hours = int(body.get("RetentionHours", 24))
        url = self._container_url(
            request.match_info["project"], env, container, "racwdl" if writable else "rl"
        )
        return _ok({"sasLink": url, "expiresOn": _iso(time.time() + hours * 3600)})


def demo_project(sandbox: Sandbox, path: Path | None) -> Project:
    """The demo project, kept in `path` (JSON) so it survives restarts; made on first use."""
    if path is not None and path.exists():
        project = Project(**json.loads(path.read_text()))
        sandbox.projects[project.project_id] = project
        return project
    project = sandbox.add_project()
    if path is not None:
        path.write_text(json.dumps(dataclasses.asdict(project)))
        path.chmod(0o600)
    return project


async def serve(port: int, step_s: float, azurite_port: int | None, state: Path | None) -> None:
    """Run until cancelled; prints one JSON line: the base URL and the demo project."""
    azurite = None
    if azurite_port:
        from mcpmesh.dev.azuriteproc import LocalAzurite

        azurite = LocalAzurite(port=azurite_port, location=Path("/nonexistent"))  # running already
    sandbox = Sandbox(step_s=step_s, azurite=azurite)
    project = demo_project(sandbox, state)  # kept before the port opens: who waits for it finds it
    await sandbox.start(port)
    print(json.dumps({"base_url": sandbox.base_url, **dataclasses.asdict(project)}), flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await sandbox.stop()


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="A local fake of the DXP Deployment API")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--step-s", type=float, default=10.0, help="seconds per deployment state")
    parser.add_argument("--azurite-port", type=int, help="an Azurite on 127.0.0.1 for the storage containers")
    parser.add_argument("--project-file", type=Path, help="JSON file keeping the demo project")
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.step_s, args.azurite_port, args.project_file))
