"""Participants: the org's own personas, system participants every org may use, checked input.

A participant as stored in a debate: `{id, name, role, instructions, model, kind}`, where `id` is
`p1`, `p2`, ... in the order given (judge and summarizer after the debaters), `kind` is
`persona` (the org's), `system`, or `external` (a seat of another org, `org_id`, whose turns
that org contributes: external.py).
"""

from __future__ import annotations

import re
from typing import Any, Final

from mcpmesh.proto.errors import ErrorCode, MeshException
from mcpmesh.proto.ids import validate_org_id

#: Participants every org may name with `{"system": "<key>"}` (a `model` may be added).
SYSTEM: Final[dict[str, dict[str, str]]] = {
    "judge": {
        "name": "Judge",
        "role": "judge",
        "instructions": "You are a neutral judge. Weigh the arguments on their merits only, "
        "decide as soon as the evidence allows, and give your reasons briefly.",
    },
    "devils_advocate": {
        "name": "Devil's advocate",
        "role": "devils_advocate",
        "instructions": "You argue against whatever view currently prevails, pointing out its "
        "weakest assumptions, even when you privately agree with it.",
    },
    "summarizer": {
        "name": "Summarizer",
        "role": "summarizer",
        "instructions": "You summarize discussions faithfully: the positions taken, where they "
        "agree, where they differ, and the conclusion they point to.",
    },
}

_MODEL_RE: Final = re.compile(r"^[A-Za-z0-9_.:/-]{1,128}$")
MAX_NAME: Final = 64
MAX_INSTRUCTIONS: Final = 4000


def invalid(message: str) -> MeshException:
    return MeshException(ErrorCode.INVALID_REQUEST, message)


def checked(spec: Any, pid: str, default_role: str) -> dict[str, Any]:
    """One participant from its input: a persona `{name, role?, instructions?, model?}` or a
    system participant `{system, model?}`."""
    if not isinstance(spec, dict):
        raise invalid(f"participant {pid}: give an object with a name (or {{'system': ...}})")
    unknown = set(spec) - {"name", "role", "instructions", "model", "system", "external_org"}
    if unknown:
        raise invalid(f"participant {pid}: unknown fields {sorted(unknown)}")
    model = spec.get("model") or "default"
    if not isinstance(model, str) or not _MODEL_RE.match(model):
        raise invalid(f"participant {pid}: model must be a model name or alias of mcp-llm")
    if "external_org" in spec:
        org = spec["external_org"]
        try:
            org = validate_org_id(org)
        except ValueError:
            raise invalid(f"participant {pid}: external_org must be an org id") from None
        name, role = spec.get("name"), spec.get("role") or default_role
        if not isinstance(name, str) or not 1 <= len(name.strip()) <= MAX_NAME:
            raise invalid(f"participant {pid}: name must be 1-{MAX_NAME} characters")
        return {"id": pid, "name": name.strip(), "role": str(role)[:MAX_NAME], "instructions": "",
                "model": model, "kind": "external", "org_id": org}  # fmt: skip
    if "system" in spec:
        system = SYSTEM.get(str(spec["system"]))
        if system is None:
            raise invalid(
                f"participant {pid}: no system participant {spec['system']!r}: use one of {sorted(SYSTEM)}"
            )
        return {"id": pid, **system, "model": model, "kind": "system"}
    name, role = spec.get("name"), spec.get("role") or default_role
    instructions = spec.get("instructions") or ""
    if not isinstance(name, str) or not 1 <= len(name.strip()) <= MAX_NAME:
        raise invalid(f"participant {pid}: name must be 1-{MAX_NAME} characters")
    if not isinstance(role, str) or not 1 <= len(role) <= MAX_NAME:
        raise invalid(f"participant {pid}: role must be 1-{MAX_NAME} characters")
    if not isinstance(instructions, str) or len(instructions) > MAX_INSTRUCTIONS:
        raise invalid(
            f"participant {pid}: instructions must be text of at most {MAX_INSTRUCTIONS} characters"
        )
    return {
        "id": pid,
        "name": name.strip(),
        "role": role,
        "instructions": instructions,
        "model": model,
        "kind": "persona",
    }


def system_prompt(p: dict[str, Any], topic: str) -> str:
    """What a participant is told before every turn."""
    lines = [f"You are {p['name']}, taking part in a debate as {p['role']}."]
    if p["instructions"]:
        lines.append(p["instructions"])
    lines.append(f"The question under debate: {topic}")
    return "\n".join(lines)
