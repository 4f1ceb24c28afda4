"""Isolation by construction, checked in the source: no service module reaches a store by org.

A service's handlers get the caller's org as `call.store` and another org's only from
`call.shared(owner, check)` (mcpmesh.service.grants). Python cannot stop code that means to
get around that, so the API offers no other way and this test reads every service module
(the gateway, the control plane, is the one exception: it owns tenants) for the ways
around: building a Store or TenantStore, `for_tenant`, the store's private parts, the
database itself, or the kit's whole-service store (`service.store`). `testing.py` modules
(test helpers, never served) may inspect any org's data.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parents[2]
#: The control plane: it creates, exports and deletes tenants (its README says how).
EXEMPT_PACKAGES: Final = {"gateway"}
#: Attributes whose use names an org or bypasses the per-org handles.
FORBIDDEN_ATTRIBUTES: Final = {
    "for_tenant",
    "_tenant_collection",
    "orgs_with",
    "drop_tenant",
    "export_tenant",
    "export_tenant_json",
    "tenant_collections",
    "_store",
    "_db",
    "get_collection",
    "get_database",
}
#: Callables that build a store handle (or reach past the grant check that guards one).
FORBIDDEN_CALLS: Final = {
    "Store",
    "TenantStore",
    "Vectors",
    "TenantVectors",
    "connect_database",
    "reach_shared",
}
#: `service.store` / `service.vectors`: the whole store, every org's.
WHOLE_STORES: Final = {"store", "vectors"}


def violations(source: str, filename: str = "<source>") -> list[str]:
    """Each way around the per-org handles in `source`, as `file:line: what`."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        where = f"{filename}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Attribute):
            if node.attr in FORBIDDEN_ATTRIBUTES:
                found.append(f"{where}: .{node.attr}")
            value = node.value
            names_service = (isinstance(value, ast.Name) and value.id == "service") or (
                isinstance(value, ast.Attribute) and value.attr == "service"
            )
            if node.attr in WHOLE_STORES and names_service:
                found.append(f"{where}: service.{node.attr} (every org's data)")
        elif isinstance(node, ast.Call):
            func = node.func
            name = (
                func.id
                if isinstance(func, ast.Name)
                else func.attr
                if isinstance(func, ast.Attribute)
                else ""
            )
            if name in FORBIDDEN_CALLS:
                found.append(f"{where}: {name}(...)")
    return found


def service_modules() -> list[Path]:
    modules = []
    for path in sorted((ROOT / "services").glob("*/mcpmesh/*/**/*.py")):
        package = path.relative_to(ROOT / "services").parts[2]
        if package in EXEMPT_PACKAGES or path.name == "testing.py":
            continue
        modules.append(path)
    return modules


def test_no_service_module_reaches_a_store_by_org() -> None:
    modules = service_modules()
    assert any(path.parts[-2] == "context" for path in modules), "mcp-context must be checked"
    problems = [p for path in modules for p in violations(path.read_text(), str(path.relative_to(ROOT)))]
    assert problems == [], "reach another org only with call.shared(owner, check):\n" + "\n".join(problems)


def test_the_check_finds_each_way_around() -> None:
    """The checker itself: each of these lines would let a handler read another org's data."""
    bad = {
        "call.service.store.for_tenant('org-other')": ".for_tenant",
        "app.service.store": "service.store",
        "service.vectors": "service.vectors",
        "TenantStore(store, 'org-other')": "TenantStore(...)",
        "mcpmesh.store.Store(db, kinds)": "Store(...)",
        "connect_database(None).get_collection('org-other__contexts')": "connect_database(...)",
        "store._tenant_collection('org-other', 'contexts')": "._tenant_collection",
        "reach_shared(store, 'org-a', 'org-b', check)": "reach_shared(...)",
        "call.store._store": "._store",
    }
    for line, expected in bad.items():
        assert any(expected in problem for problem in violations(line)), line
    fine = "await call.store.collection('contexts')\nshared = await call.shared(owner, check)\nshared.store"
    assert violations(fine) == []
