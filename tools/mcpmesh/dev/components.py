"""Find the repository's components: proto, libs/<name>, services/<name>."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Component:
    name: str  # folder name, e.g. "mcp-context"
    kind: str  # "proto", "lib" or "service"
    root: Path  # source root (holds the mcpmesh/ namespace folder)
    module: str  # importable module, e.g. "mcpmesh.context"


def repo_root() -> Path:
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pants.toml").exists() and (parent / "mesh").exists():
            return parent
    raise RuntimeError(f"not inside an mcpmesh checkout: {here}")


def find_components(root: Path) -> list[Component]:
    found = []
    for kind, pattern in (("proto", "proto"), ("lib", "libs/*"), ("service", "services/*")):
        for folder in sorted(root.glob(pattern)):
            packages = sorted(p for p in (folder / "mcpmesh").glob("*") if (p / "__init__.py").exists())
            if not packages:
                continue
            pkg = packages[0]
            if kind == "service" and not (pkg / "__main__.py").exists():
                continue
            found.append(Component(folder.name, kind, folder, f"mcpmesh.{pkg.name}"))
    return found
