"""Which knowledge base a name means for the caller, and what it may do with it.

Lookup for a kb name sent by org O (without `owner_org`): O's own kbs (`call.store`), then
the system org's (readable by every org, writable with the `admin` scope). With `owner_org`:
that org's kb, through a share it gave O, checked at the owner's side on every call
(sharing.py). Whatever the reason it is not reachable, the answer is the same "not found".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from mcpmesh.proto.errors import ErrorCode, MeshException
from mcpmesh.proto.ids import InvalidIdentifier, validate_org_id
from mcpmesh.rag.app import RagApp
from mcpmesh.service import Call, JobContext
from mcpmesh.store import TenantStore
from mcpmesh.tenancy.scopes import covers
from mcpmesh.vectors import TenantVectors, validate_kb_name

Need = Literal["read", "write", "delete", "share"]
#: Who reaches kbs: a tool call, or a job (add_documents) as its org, which holds no key's scopes.
Reacher = Call | JobContext
Role = Literal["owner", "system", "read", "write"]


@dataclass
class Kb:
    """A knowledge base the caller may use as needed, in its owner's store and vectors."""

    name: str
    doc: dict[str, Any]
    store: TenantStore
    vectors: TenantVectors
    role: Role
    grant: Any = None  # a sharing.KbGrant for a kb another org shared

    @property
    def owner(self) -> str:
        return self.store.org_id


def invalid(message: str) -> MeshException:
    return MeshException(ErrorCode.INVALID_REQUEST, message)


def check_kb(value: str) -> str:
    try:
        return validate_kb_name(value)
    except InvalidIdentifier:
        raise invalid(
            f"invalid knowledge base name {value[:60]!r}: use 1-40 lowercase letters, digits or underscores"
        ) from None


def check_org(value: str, what: str) -> str:
    try:
        return validate_org_id(value)
    except InvalidIdentifier:
        raise invalid(f"invalid {what} {value[:60]!r}: expected an org id like 'org-acme'") from None


def not_found(kb: str) -> MeshException:
    return MeshException(
        ErrorCode.NOT_FOUND, f"knowledge base {kb!r} not found: list yours with rag_list_kbs"
    )


def is_admin(call: Reacher) -> bool:
    return isinstance(call, Call) and covers(call.stamp.scopes, "admin")


async def _public(store: TenantStore) -> bool:
    """The standing grant every org holds on the system org's kbs (reading; writing needs admin)."""
    return True


async def system_kbs(app: RagApp, call: Reacher) -> tuple[TenantStore, TenantVectors]:
    if call.org_id == app.settings.system_org:
        return call.store, call.vectors
    shared = await call.shared(app.settings.system_org, _public)
    assert shared is not None and shared.vectors is not None  # the public grant always holds
    return shared.store, shared.vectors


async def kb_doc(store: TenantStore, kb: str) -> dict[str, Any] | None:
    return await (await store.collection("kbs")).find_one({"_id": kb})


async def resolve(app: RagApp, call: Reacher, kb: str, need: Need, owner_org: str | None = None) -> Kb:
    kb = check_kb(kb)
    if owner_org is not None and owner_org != call.org_id:
        from mcpmesh.rag.sharing import resolve_shared

        return await resolve_shared(call, kb, need, check_org(owner_org, "owner_org"))
    doc = await kb_doc(call.store, kb)
    if doc is not None:
        return Kb(kb, doc, call.store, call.vectors, "owner")
    if owner_org is None and call.org_id != app.settings.system_org:
        store, vectors = await system_kbs(app, call)
        doc = await kb_doc(store, kb)
        if doc is not None:
            if need == "share":
                raise invalid(
                    "system knowledge bases are readable by every org already: they cannot be shared"
                )
            if need != "read" and not is_admin(call):
                raise MeshException(
                    ErrorCode.FORBIDDEN, "system knowledge bases can be changed only with the 'admin' scope"
                )
            return Kb(kb, doc, store, vectors, "system")
    raise not_found(kb)
