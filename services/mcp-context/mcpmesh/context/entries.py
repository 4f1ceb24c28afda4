"""Entries: checking what an append carries, storing it (compressed when large), reading it back.

An entry is one document in `<org>__entries` (or `entries_cold`):

    {_id: "<ctx_id>:<seq, 10 digits>", ctx_id, seq, tok_start, tokens, role,
     content: str            -- or --   z: zlib bytes, zipped: true, size (large contents),
     name?, created_at, r: <reservation id of the append that wrote it>}

`tok_start` is the running token total before the entry, so "the last N tokens" is the
index range `tok_start >= total - N` on (ctx_id, tok_start). The `_id` makes
(ctx_id, seq) unique on any engine.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, NotRequired

import msgspec
from typing_extensions import TypedDict  # pydantic needs this one on Python < 3.12

from mcpmesh.context.clock import iso
from mcpmesh.context.inputs import invalid
from mcpmesh.context.settings import ContextSettings
from mcpmesh.context.tokens import TokenCounter, count_tokens
from mcpmesh.proto.errors import ErrorCode, MeshException

ROLES: Final = ("system", "user", "assistant", "tool")
_NAME_RE: Final = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
#: Per-entry overhead counted against the reply budget (indentation, separators).
ENTRY_OVERHEAD_BYTES: Final = 100


class EntryIn(TypedDict):
    """One entry to append."""

    role: str  # system | user | assistant | tool
    content: str
    name: NotRequired[str]  # e.g. the tool or participant that produced it


@dataclass(frozen=True)
class PreparedEntry:
    role: str
    content: str
    name: str | None
    tokens: int
    size: int  # UTF-8 bytes of the content


def entry_id(ctx_id: str, seq: int) -> str:
    return f"{ctx_id}:{seq:010d}"


async def prepare_entries(
    raw: Sequence[Mapping[str, Any]], settings: ContextSettings, counter: TokenCounter
) -> list[PreparedEntry]:
    """Check every entry and count its tokens before anything is written."""
    if not raw:
        raise invalid("nothing to append: give 'entries' (a non-empty list) or 'role' and 'content'")
    if len(raw) > settings.max_entries_per_append:
        raise invalid(
            f"an append may carry at most {settings.max_entries_per_append} entries, not {len(raw)}"
        )
    prepared: list[PreparedEntry] = []
    for index, item in enumerate(raw):
        where = f"entry {index}" if len(raw) > 1 else "entry"
        if not isinstance(item, Mapping):
            raise invalid(f"{where}: expected an object with 'role' and 'content'")
        unknown = set(item) - {"role", "content", "name"}
        if unknown:
            raise invalid(f"{where}: unknown field(s) {', '.join(sorted(map(str, unknown)))}")
        role = item.get("role")
        if role not in ROLES:
            shown = repr(role) if isinstance(role, str) and len(role) <= 40 else "<value>"
            raise invalid(f"{where}: role {shown} is not one of {', '.join(ROLES)}")
        content = item.get("content")
        if not isinstance(content, str):
            raise invalid(f"{where}: content must be a string")
        size = len(content.encode("utf-8"))
        if size > settings.max_entry_bytes:
            raise MeshException(
                ErrorCode.LIMIT_EXCEEDED,
                f"{where} is {size} bytes; an entry may be at most {settings.max_entry_bytes} bytes",
            )
        name = item.get("name")
        if name is not None and (not isinstance(name, str) or not _NAME_RE.fullmatch(name)):
            raise invalid(f"{where}: name must be 1-64 letters, digits or '_', '.', ':', '-'")
        tokens = await count_tokens(counter, content)
        prepared.append(PreparedEntry(role=role, content=content, name=name, tokens=tokens, size=size))
    return prepared


def entry_document(
    ctx_id: str,
    seq: int,
    tok_start: int,
    entry: PreparedEntry,
    *,
    created_at: datetime,
    reservation: str,
    compress_above: int,
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "_id": entry_id(ctx_id, seq),
        "ctx_id": ctx_id,
        "seq": seq,
        "tok_start": tok_start,
        "tokens": entry.tokens,
        "role": entry.role,
        "created_at": created_at,
        "r": reservation,
    }
    if entry.name is not None:
        doc["name"] = entry.name
    raw = entry.content.encode("utf-8")
    if entry.size > compress_above:
        packed = zlib.compress(raw, 6)
        if len(packed) < len(raw) * 0.9:  # only when it pays
            doc["z"] = packed
            doc["zipped"] = True  # indexed flag (never index the blob itself)
            doc["size"] = entry.size
            return doc
    doc["content"] = entry.content
    return doc


def entry_content(doc: Mapping[str, Any]) -> str:
    packed = doc.get("z")
    if packed is not None:
        return zlib.decompress(bytes(packed)).decode("utf-8")
    content: str = doc.get("content", "")
    return content


def entry_view(doc: Mapping[str, Any]) -> dict[str, Any]:
    view: dict[str, Any] = {
        "seq": doc["seq"],
        "role": doc["role"],
        "content": entry_content(doc),
        "tokens": doc["tokens"],
        "created_at": iso(doc.get("created_at")),
    }
    if doc.get("name") is not None:
        view["name"] = doc["name"]
    return view


def reply_cost(view: Mapping[str, Any]) -> int:
    """An entry's share of a reply on the wire: the SDK sends a tool result twice (structured,
    and as indented JSON text inside a JSON string, where quoting is escaped again)."""
    return 3 * len(msgspec.json.encode(view)) + ENTRY_OVERHEAD_BYTES
