"""Deployment manifests agree with the code: Dockerfiles, compose, kustomize, health probe.

Every service folder with `mcpmesh/<pkg>/__main__.py` must have a Dockerfile that runs that
module, a compose service and a k8s Deployment + HPA; env var names in the manifests must be
ones the code reads; committed files hold placeholders, never secrets. The kustomize checks
render the overlays with `kubectl kustomize` and skip when kubectl is not installed.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import nats
import pytest
import yaml
from nats.micro import add_service
from nats.micro.service import ServiceConfig

from mcpmesh.dev.natsproc import LocalNatsServer, _free_port
from mcpmesh.tenancy.natsauth import password_reference

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose"
K8S = ROOT / "k8s"
NATS_CONF = COMPOSE / "nats" / "nats-server.conf"
PROBE = COMPOSE / "probe" / "healthprobe.py"
INFRA = {"nats", "mongodb", "qdrant"}
SECRET_NAME = re.compile(r"(PASSWORD|SECRET|PEPPER|_KEY)$")


# --- discovery ----------------------------------------------------------------------------


def runnable_services() -> dict[str, str]:
    """folder -> package, for every services/<folder>/mcpmesh/<pkg>/__main__.py."""
    return {m.parents[2].name: m.parent.name for m in sorted(ROOT.glob("services/*/mcpmesh/*/__main__.py"))}


def package_of(folder: str) -> str:
    packages = sorted(p.name for p in (ROOT / "services" / folder / "mcpmesh").glob("*") if p.is_dir())
    assert packages, f"services/{folder} has no mcpmesh/<pkg> package"
    return packages[0]


def deployables() -> list[str]:
    """Services that must have manifests, plus any service folder that already has a Dockerfile."""
    return sorted(set(runnable_services()) | {d.parent.name for d in ROOT.glob("services/*/Dockerfile")})


def nats_user(folder: str) -> str:
    return "gateway" if folder == "gateway" else f"svc-{package_of(folder)}"


# --- parsing ------------------------------------------------------------------------------


def dockerfile(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        word, _, rest = (pending + line).partition(" ")
        out.append((word.upper(), rest.strip()))
        pending = ""
    return out


def exec_form(text: str) -> list[str]:
    value = json.loads(text)
    assert isinstance(value, list), f"not exec form: {text}"
    return value


def healthcheck_cmd(instructions: list[tuple[str, str]]) -> list[str] | None:
    for word, rest in instructions:
        if word == "HEALTHCHECK":
            return exec_form(rest[rest.index("CMD") + 3 :].strip())
    return None


def dockerfile_env(instructions: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for word, rest in instructions:
        if word == "ENV":
            env.update(dict(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=(\S+)", rest)))
    return env


@cache
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((COMPOSE / "docker-compose.yml").read_text())
    return data


def compose_env(service: str) -> dict[str, str]:
    env = compose()["services"][service].get("environment") or {}
    assert isinstance(env, dict), f"compose {service}: environment must be a mapping"
    return {k: "" if v is None else str(v) for k, v in env.items()}


def load_docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


@cache
def kustomization(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((path / "kustomization.yaml").read_text())
    return data


def base_resources() -> list[dict[str, Any]]:
    """The documents of the files k8s/base/kustomization.yaml lists (before patches)."""
    docs: list[dict[str, Any]] = []
    for name in kustomization(K8S / "base")["resources"]:
        docs += load_docs(K8S / "base" / name)
    return docs


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any] | None:
    return next((d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name), None)


def nats_conf_vars() -> set[str]:
    """The $VARS the config takes passwords from (not subjects such as $SRV.> or $JS.API.>)."""
    return set(re.findall(r":\s*\$([A-Z][A-Z0-9_]*)\b", NATS_CONF.read_text()))


def nats_conf_users() -> set[str]:
    return set(re.findall(r'"user": "([^"]+)"', NATS_CONF.read_text()))


def env_example() -> dict[str, str]:
    pairs = {}
    for line in (COMPOSE / ".env.example").read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            name, _, value = line.partition("=")
            pairs[name] = value
    return pairs


def secret_template() -> list[dict[str, Any]]:
    return load_docs(K8S / "base" / "secret.example.yaml")


@cache
def documented_env_names() -> frozenset[str]:
    """Env var names the code reads or documents: quoted in non-test sources, backticked in READMEs."""
    names: set[str] = set()
    for top in ("proto", "libs", "services"):
        for path in (ROOT / top).rglob("*"):
            if "tests" in path.parts or path.name.startswith("test_") or path.name == "conftest.py":
                continue
            if path.suffix == ".py":
                names |= set(re.findall(r"[\"']([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)[\"']", path.read_text()))
            elif path.name == "README.md":
                names |= set(re.findall(r"`([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)", path.read_text()))
    return frozenset(names)


# --- Dockerfiles --------------------------------------------------------------------------


def test_there_are_services_to_check() -> None:
    assert runnable_services().get("mcp-context") == "context"
    assert "gateway" in deployables()


@pytest.mark.parametrize("folder", deployables())
def test_dockerfile_runs_the_service_module_on_the_shared_base(folder: str) -> None:
    path = ROOT / "services" / folder / "Dockerfile"
    assert path.is_file(), f"services/{folder}/Dockerfile is missing"
    pkg = package_of(folder)
    steps = dockerfile(path)
    words = [w for w, _ in steps]
    assert ("ARG", "BASE=mcpmesh-base") in steps and ("FROM", "${BASE}") in steps
    assert words.index("ARG") < words.index("FROM")
    assert f"services/{folder} /app/services/{folder}" in [r for w, r in steps if w == "COPY"]
    assert dockerfile_env(steps)["PYTHONPATH"] == f"/app/services/{folder}"
    cmds = [exec_form(r) for w, r in steps if w == "CMD"]
    assert cmds and cmds[-1] == ["python", "-m", f"mcpmesh.{pkg}"]
    probe = healthcheck_cmd(steps)
    expected = ["http", "/health"] if folder == "gateway" else ["bus", pkg]
    assert probe == ["python", "/app/probe/healthprobe.py", *expected]


def test_base_image_is_slim_non_root_and_pinned() -> None:
    steps = dockerfile(COMPOSE / "base.Dockerfile")
    assert steps[0] == ("FROM", "python:3.11-slim")
    run = " ".join(r for w, r in steps if w == "RUN")
    assert re.search(r"pip install -r \S+ -c \S*constraints\.txt", run)
    copies = [r.split()[0] for w, r in steps if w == "COPY"]
    assert {"proto", "libs", "compose/probe"} <= set(copies)
    user = [r for w, r in steps if w == "USER"][-1]
    assert re.fullmatch(r"[1-9][0-9]*:[1-9][0-9]*", user), "USER must be a numeric non-root uid:gid"


def test_images_leave_out_only_packages_the_runtime_does_not_import() -> None:
    """The base image drops requirements after '# dev and test'; no shipped module may need them."""
    lines = (ROOT / "3rdparty/python/requirements.txt").read_text().splitlines()
    assert "# dev and test" in lines
    dev = lines[lines.index("# dev and test") + 1 :]
    modules = {re.split(r"[=<>\[; ]", d)[0].lower().replace("-", "_") for d in dev if d and d[0].isalpha()}
    assert {"pytest", "mypy"} <= modules
    offenders = []
    for top in ("proto", "libs", "services"):
        for path in (ROOT / top).rglob("*.py"):
            if "tests" in path.parts or path.name.startswith("test_") or path.name == "conftest.py":
                continue
            for mod in re.findall(r"^\s*(?:import|from)\s+([A-Za-z_]\w*)", path.read_text(), re.M):
                if mod.lower() in modules:
                    offenders.append(f"{path.relative_to(ROOT)} imports {mod}")
    assert not offenders, offenders


def test_dockerignore_keeps_local_state_and_secrets_out() -> None:
    entries = set((ROOT / ".dockerignore").read_text().split())
    assert {
        ".git",
        ".venv",
        ".mesh",
        ".pants.d",
        "**/__pycache__",
        "compose/.env",
        "compose/secrets",
    } <= entries


# --- compose ------------------------------------------------------------------------------


def profiles_of(service: str) -> set[str]:
    return set(compose()["services"][service].get("profiles") or [])


def test_compose_profiles() -> None:
    services = compose()["services"]
    core = {name for name in services if "core" in profiles_of(name)}
    full = {name for name in services if "full" in profiles_of(name)}
    observability = {name for name in services if "observability" in profiles_of(name)}
    assert INFRA | {"gateway"} | set(runnable_services()) <= core
    assert core <= full, "full is core plus the other services"
    assert "otel-collector" in observability and not observability & full
    # the build-only base image never runs
    assert profiles_of("mesh-base") == {"base-image"}
    assert services["mesh-base"]["build"]["dockerfile"] == "compose/base.Dockerfile"


@pytest.mark.parametrize("folder", deployables())
def test_compose_service_builds_the_folder_and_uses_its_nats_user(folder: str) -> None:
    service = compose()["services"].get(folder)
    assert service is not None, f"compose has no service {folder}"
    build = service["build"]
    assert build["context"] == ".." and build["dockerfile"] == f"services/{folder}/Dockerfile"
    assert build["additional_contexts"] == {"mcpmesh-base": "service:mesh-base"}
    assert service["read_only"] is True and service["cap_drop"] == ["ALL"]
    assert service["depends_on"]["nats"]["condition"] == "service_healthy"
    url = compose_env(folder)["NATS_URL"]
    user = nats_user(folder)
    assert user in nats_conf_users()
    password_var = password_reference(user).removeprefix("$")  # each user its own password
    assert url == f"nats://{user}:${{{password_var}}}@nats:4222"


def test_compose_waits_only_on_services_that_report_health() -> None:
    services = compose()["services"]
    for name, service in services.items():
        rules = service.get("depends_on") or {}
        for target, rule in rules.items() if isinstance(rules, dict) else []:
            if rule.get("condition") == "service_healthy":
                other = services[target]
                has_check = "healthcheck" in other or (
                    "build" in other and healthcheck_cmd(dockerfile(ROOT / other["build"]["dockerfile"]))
                )
                assert has_check, f"{name} waits for {target} to be healthy, but it has no healthcheck"


def test_every_nats_password_the_config_names_is_provided_everywhere() -> None:
    wanted = nats_conf_vars()
    assert {"NATS_GATEWAY_PASSWORD", "NATS_SVC_CONTEXT_PASSWORD", "NATS_SVC_LLM_PASSWORD"} <= wanted
    assert set(compose_env("nats")) == wanted
    assert wanted <= set(env_example())
    nats_secret = next(d for d in secret_template() if d["metadata"]["name"] == "mcpmesh-nats")
    assert set(nats_secret["stringData"]) == wanted
    # k8s ships a copy of the generated file (kustomize cannot read outside k8s/)
    assert (K8S / "base" / "nats" / "nats-server.conf").read_text() == NATS_CONF.read_text()


# --- k8s (raw files) ----------------------------------------------------------------------


@pytest.mark.parametrize("folder", deployables())
def test_k8s_base_has_deployment_hpa_and_pdb(folder: str) -> None:
    docs = base_resources()
    deployment = find(docs, "Deployment", folder)
    assert deployment is not None, f"no Deployment {folder} in k8s/base/kustomization.yaml resources"
    hpa = find(docs, "HorizontalPodAutoscaler", folder)
    assert hpa is not None, f"no HorizontalPodAutoscaler {folder}"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": folder}
    assert hpa["spec"]["minReplicas"] >= 2
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
    assert "replicas" not in deployment["spec"], "the HPA owns replicas"
    pdb = find(docs, "PodDisruptionBudget", folder)
    assert pdb is not None and pdb["spec"]["selector"] == deployment["spec"]["selector"]

    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == f"mcpmesh/{folder}"
    assert container["resources"]["requests"]["cpu"], "CPU autoscaling needs a CPU request"
    env = {e["name"]: e for e in container["env"]}
    own = password_reference(nats_user(folder)).removeprefix("$")  # its own password, no other's
    assert env["NATS_URL"]["value"] == f"nats://{nats_user(folder)}:$({own})@nats:4222"
    if folder == "gateway":
        assert container["livenessProbe"]["httpGet"]["path"] == "/health"
        assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    else:
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert labels["mcpmesh.io/role"] == "service"  # selects the shared patches and policies
        probe = container["readinessProbe"]["exec"]["command"]
        assert probe == ["python", "/app/probe/healthprobe.py", "bus", package_of(folder)]


def test_no_orphan_manifests() -> None:
    """Every manifest names a service folder that exists."""
    folders = {p.name for p in (ROOT / "services").iterdir() if p.is_dir()}
    built = {s["build"]["dockerfile"].split("/")[1] for s in compose()["services"].values() if "build" in s}
    assert built - {"base.Dockerfile"} <= folders
    roles = ("gateway", "service")
    deployed = {
        d["metadata"]["name"]
        for d in base_resources()
        if d["kind"] == "Deployment" and d["metadata"]["labels"].get("mcpmesh.io/role") in roles
    }
    assert deployed <= folders


# --- secrets ------------------------------------------------------------------------------


def deploy_files() -> Iterator[Path]:
    """Files of this deployment setup that are committed (compose/.env and compose/secrets never are)."""
    yield ROOT / ".dockerignore"
    yield from ROOT.glob("services/*/Dockerfile")
    local = (COMPOSE / ".env", COMPOSE / "secrets")
    for top in (COMPOSE, K8S):
        for path in top.rglob("*"):
            if path.is_file() and not any(path == p or p in path.parents for p in local):
                yield path


def test_committed_files_hold_no_secrets() -> None:
    patterns = {
        "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
        "long random token": re.compile(r"\b[0-9a-f]{32,}\b"),
        "api key": re.compile(r"\b(mk_admin_|mm_)[A-Za-z0-9_-]{8,}"),
        "password in a URL": re.compile(r"://[^:/\s]+:(?![$<])[^@\s]+@"),
    }
    found = [
        f"{path.relative_to(ROOT)}: {what}"
        for path in deploy_files()
        for what, pattern in patterns.items()
        if pattern.search(path.read_text(errors="replace"))
    ]
    assert not found, found


def test_env_example_leaves_every_secret_empty() -> None:
    secrets = {k: v for k, v in env_example().items() if SECRET_NAME.search(k)}
    assert {"MCPMESH_ADMIN_KEY", "MONGO_ROOT_PASSWORD", "NATS_SVC_CONTEXT_PASSWORD"} <= set(secrets)
    assert all(v == "" for v in secrets.values()), secrets


def test_k8s_secret_template_is_placeholders_and_never_applied() -> None:
    docs = secret_template()
    assert {d["metadata"]["name"] for d in docs} == {
        "mcpmesh-nats",
        "mcpmesh-secrets",
        "mcpmesh-stamp",
        "mcpmesh-secrets-keys",
        "mcpmesh-llm",
    }
    for doc in docs:
        for key, value in doc["stringData"].items():
            assert re.search(r"<[^>]+>", value), f"{doc['metadata']['name']}.{key} is not a placeholder"
    assert "secret.example.yaml" not in kustomization(K8S / "base")["resources"]


def test_the_tenant_secrets_master_key_is_a_file_secret_only_for_services_keeping_secrets() -> None:
    assert compose()["secrets"]["secrets_keys"] == {"file": "./secrets/secrets-keys"}  # gitignored dir
    for name, service in compose()["services"].items():
        mounted = "secrets_keys" in (service.get("secrets") or [])
        assert mounted == ("MCPMESH_SECRETS_KEYS_FILE" in compose_env(name)), name
    assert "secrets_keys" not in compose()["services"]["gateway"].get("secrets", [])
    assert "MCPMESH_SECRETS_KEYS" not in compose_env("gateway")  # never a value in the environment


def test_compose_takes_secrets_from_env_interpolation_only() -> None:
    for name in compose()["services"]:
        for key, value in compose_env(name).items():
            if SECRET_NAME.search(key) or key == "MONGO_INITDB_ROOT_PASSWORD":
                assert value.startswith("${"), f"compose {name}.{key} must come from .env"


# --- env var names ------------------------------------------------------------------------


@pytest.mark.parametrize("folder", deployables())
def test_env_var_names_are_ones_the_code_reads(folder: str) -> None:
    if folder not in runnable_services():
        pytest.skip(f"services/{folder} has no __main__ yet: its settings are not written")
    allowed = allowed_env_names()
    names = set(compose_env(folder))
    names |= set(dockerfile_env(dockerfile(ROOT / "services" / folder / "Dockerfile")))
    deployment = find(base_resources(), "Deployment", folder)
    assert deployment is not None
    names |= {e["name"] for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    names |= {line.split("=")[0] for line in config_literals()}
    unknown = sorted(names - allowed)
    assert not unknown, f"{folder}: env vars no settings module or README mentions: {unknown}"


def allowed_env_names() -> set[str]:
    # X_FILE: the settings read a secret X from a file when X_FILE is set (the _FILE convention)
    documented = documented_env_names() | {f"{name}_FILE" for name in documented_env_names()}
    return documented | nats_conf_vars() | {"PYTHONPATH"}


def config_literals() -> list[str]:
    gen = kustomization(K8S / "base")["configMapGenerator"]
    literals: list[str] = next(g["literals"] for g in gen if g["name"] == "mcpmesh-config")
    return literals


# --- k8s (rendered with kubectl kustomize) ------------------------------------------------


@cache
def render(target: str) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: kustomize output not checked")
    out = subprocess.run(
        [kubectl, "kustomize", str(K8S / target)], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def mesh_workloads(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        d
        for d in docs
        if d["kind"] == "Deployment"
        and d["spec"]["template"]["metadata"]["labels"].get("mcpmesh.io/role") in ("gateway", "service")
    ]


@pytest.mark.parametrize("target", ["base", "overlays/dev", "overlays/prod"])
def test_kustomize_output_is_hardened_and_consistent(target: str) -> None:
    docs = render(target)
    workloads = mesh_workloads(docs)
    assert {d["metadata"]["name"] for d in workloads} >= set(runnable_services())
    for d in workloads:
        name, pod = d["metadata"]["name"], d["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["automountServiceAccountToken"] is False, name
        container = pod["containers"][0]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True, name
        assert container["securityContext"]["capabilities"]["drop"] == ["ALL"], name
        assert {m["mountPath"] for m in container["volumeMounts"]} >= {"/tmp", "/etc/mcpmesh/stamp"}, name
        assert container["resources"]["requests"]["cpu"], name
        assert "replicas" not in d["spec"], name
        # $(VAR) expands only from variables defined earlier in env (or envFrom)
        defined: set[str] = set()
        for entry in container["env"]:
            for ref in re.findall(r"\$\(([A-Z0-9_]+)\)", entry.get("value", "")):
                assert ref in defined, f"{name}: {entry['name']} uses $({ref}) before it is defined"
            assert "value" not in entry or not SECRET_NAME.search(entry["name"]), f"{name}: literal secret"
            defined.add(entry["name"])
        if d["metadata"]["labels"]["mcpmesh.io/role"] == "service":
            stamp = next(v for v in pod["volumes"] if v["name"] == "stamp")
            assert stamp["secret"]["items"] == [{"key": "public.pem", "path": "public.pem"}], name
    runnable = [d for d in workloads if d["metadata"]["name"] in runnable_services()]
    names = {e["name"] for d in runnable for e in d["spec"]["template"]["spec"]["containers"][0]["env"]}
    names |= {
        k
        for d in docs
        if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("mcpmesh-config")
        for k in d["data"]
    }
    assert not names - allowed_env_names(), f"env vars the code does not read: {names - allowed_env_names()}"
    targets = {
        (h["spec"]["scaleTargetRef"]["kind"], h["spec"]["scaleTargetRef"]["name"])
        for h in docs
        if h["kind"] == "HorizontalPodAutoscaler"
    }
    assert targets == {("Deployment", d["metadata"]["name"]) for d in workloads}
    if target == "overlays/prod":
        assert all(d["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"] for d in workloads)
        assert find(docs, "StatefulSet", "nats")["spec"]["replicas"] == 3  # type: ignore[index]


METRICS_PORT = 9464  # MCPMESH_METRICS_PORT of every service, in compose and k8s


@pytest.mark.parametrize("target", ["base", "overlays/dev", "overlays/prod"])
def test_only_the_gateway_is_reachable_from_outside_the_namespace(target: str) -> None:
    """...and the services' metrics port, from the monitoring namespace only."""
    policies = [d for d in render(target) if d["kind"] == "NetworkPolicy"]
    deny = find(policies, "NetworkPolicy", "default-deny")
    assert deny is not None and deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    monitoring = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    for policy in policies:
        for rule in policy["spec"].get("ingress", []):
            peers = rule.get("from", [])
            outside = [p for p in peers if "namespaceSelector" in p or "ipBlock" in p]
            if outside or not peers:
                selector = policy["spec"]["podSelector"]
                if selector == {"matchLabels": {"mcpmesh.io/role": "service"}}:
                    assert peers == [monitoring], policy["metadata"]["name"]
                    assert rule["ports"] == [{"protocol": "TCP", "port": METRICS_PORT}], policy["metadata"][
                        "name"
                    ]
                    continue
                assert selector == {"matchLabels": {"mcpmesh.io/role": "gateway"}}, policy["metadata"]["name"]


def test_prometheus_scrapes_the_gateway_and_every_service() -> None:
    assert compose_env("mcp-context")["MCPMESH_METRICS_PORT"] == str(METRICS_PORT)
    config = yaml.safe_load((COMPOSE / "prometheus" / "prometheus.yml").read_text())
    targets = {t for job in config["scrape_configs"] for c in job["static_configs"] for t in c["targets"]}
    services = {folder for folder in runnable_services() if folder != "gateway"}
    assert targets == {"gateway:8080"} | {f"{folder}:{METRICS_PORT}" for folder in services}


@pytest.mark.parametrize("target", ["base", "overlays/dev", "overlays/prod"])
def test_every_service_pod_exposes_its_metrics_port(target: str) -> None:
    docs = render(target)
    (config,) = [
        d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("mcpmesh-config")
    ]
    assert config["data"]["MCPMESH_METRICS_PORT"] == str(METRICS_PORT)
    services = [
        d
        for d in docs
        if d["kind"] == "Deployment" and d["metadata"]["labels"].get("mcpmesh.io/role") == "service"
    ]
    assert services
    for deployment in services:
        template = deployment["spec"]["template"]
        assert template["metadata"]["annotations"]["prometheus.io/port"] == str(METRICS_PORT)
        ports = template["spec"]["containers"][0]["ports"]
        assert {"name": "metrics", "containerPort": METRICS_PORT} in ports


# --- the health probe against a real NATS with the shipped users --------------------------

PASSWORDS = {name: f"{name.lower()}-test" for name in ("NATS_GATEWAY_PASSWORD", "NATS_SVC_CONTEXT_PASSWORD")}


@pytest.fixture
def secured_nats(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[LocalNatsServer]:
    for name in nats_conf_vars():
        monkeypatch.setenv(name, PASSWORDS.get(name, "unused"))
    text = NATS_CONF.read_text().replace("http_port: 8222", f"http_port: {_free_port()}")
    text = text.replace('store_dir: "/data/jetstream"', f"store_dir: {json.dumps(str(tmp_path))}")
    server = LocalNatsServer(config=text)
    yield server
    server.close()


def probe(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(PROBE), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


async def test_bus_probe_with_a_service_user(secured_nats: LocalNatsServer) -> None:
    port = secured_nats.url.rsplit(":", 1)[1]
    url = f"nats://svc-context:{PASSWORDS['NATS_SVC_CONTEXT_PASSWORD']}@127.0.0.1:{port}"
    nc = await nats.connect(url)
    try:
        await add_service(nc, ServiceConfig(name="context", version="0.0.1"))
        await nc.flush()
        # in a thread: this event loop must stay free to answer the PING
        ok = await asyncio.to_thread(probe, "bus", "context", NATS_URL=url)
        assert ok.returncode == 0, ok.stderr
        other = await asyncio.to_thread(probe, "bus", "llm", NATS_URL=url)
        assert other.returncode == 1 and "no PING reply from 'llm'" in other.stderr
        wrong = await asyncio.to_thread(probe, "bus", "context", NATS_URL=url.replace("-test@", "-wrong@"))
        assert wrong.returncode == 1 and "cannot connect to NATS" in wrong.stderr
        assert "-test" not in ok.stderr + other.stderr + wrong.stderr  # never echoes the password
    finally:
        await nc.close()


def test_bus_probe_fails_while_nothing_here_is_connected(secured_nats: LocalNatsServer) -> None:
    port = secured_nats.url.rsplit(":", 1)[1]
    result = probe("bus", "context", NATS_URL=f"nats://svc-context:x@127.0.0.1:{port}")
    assert result.returncode == 1 and "no connection to NATS port" in result.stderr


@pytest.fixture
def http_status() -> Iterator[tuple[int, list[int]]]:
    status = [200]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status[0] if self.path == "/health" else 404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], status
    server.shutdown()


def test_http_probe(http_status: tuple[int, list[int]]) -> None:
    port, status = http_status
    assert probe("http", "/health", GATEWAY_PORT=str(port)).returncode == 0
    status[0] = 503
    assert probe("http", "/health", GATEWAY_PORT=str(port)).returncode == 1
    assert probe("http", "/missing", GATEWAY_PORT=str(port)).returncode == 1


def test_prod_ingress_routes_only_public_gateway_paths() -> None:
    ingresses = [d for d in render("overlays/prod") if d["kind"] == "Ingress"]
    assert ingresses
    for ingress in ingresses:
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                assert path["backend"]["service"]["name"] == "gateway"
                # /metrics and /health/* are served without a key: they must stay internal
                assert path["path"] not in ("/", "/metrics", "/health"), path["path"]


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_overlays_set_the_image_of_every_service(overlay: str) -> None:
    images = {i["name"] for i in kustomization(K8S / "overlays" / overlay)["images"]}
    assert {f"mcpmesh/{folder}" for folder in deployables()} <= images


# --- dashboards ---------------------------------------------------------------------------


def test_the_tenant_dashboard_filters_by_org_and_queries_only_metrics_that_exist() -> None:
    from mcpmesh.gateway.observe import GatewayMetrics

    dashboard = json.loads((COMPOSE / "grafana" / "dashboards" / "mcpmesh-tenants.json").read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["org_id"]["multi"] is True and "org_id" in variables["org_id"]["definition"]
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert all("$org_id" in e for e in exprs if "mcpmesh_tenant_" in e)
    families = {m.name for m in GatewayMetrics().registry.collect()}
    queried = {re.sub(r"_(total|bucket)$", "", name) for e in exprs for name in re.findall(r"mcpmesh_\w+", e)}
    assert queried <= families, queried - families
