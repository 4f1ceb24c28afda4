"""The mcp-context service: its tools and resource, declared with the service kit.

`build_service()` makes a fresh MeshService whose lifespan makes the ContextApp its tools share
(reached with `call.state(ContextApp)`), so tests can run isolated instances.
"""

from __future__ import annotations

from typing import Any

import msgspec
from mcp.server.mcpserver import Context

from mcpmesh.context import appends, contexts, listing, sharing
from mcpmesh.context.app import ContextApp, lifespan_for
from mcpmesh.context.entries import EntryIn
from mcpmesh.context.inputs import invalid
from mcpmesh.context.settings import ContextSettings
from mcpmesh.context.storage import STORE_KINDS
from mcpmesh.service import Call, MeshService, call_of

INSTRUCTIONS = """\
Conversation contexts for LLM work: create a context, append entries (role: system, user,
assistant or tool), read it whole or as a window of the last N entries / last N tokens, list
and search your contexts, share them with other orgs. Namespaces 'system' and 'system/...'
are global (readable by every org). Token counts are tiktoken counts (cl100k_base by default)."""


def build_service(settings: ContextSettings | None = None) -> MeshService:
    """A fresh context service (settings from the environment unless given)."""
    settings = settings or ContextSettings.from_env()
    service = MeshService(
        "context",
        description="Multi-tenant conversation contexts",
        instructions=INSTRUCTIONS,
        store_kinds=STORE_KINDS,
        grant_index="grants",
        lifespan=lifespan_for(settings),
    )

    def served(ctx: Context | None) -> tuple[ContextApp, Call]:
        call = call_of(ctx)
        return call.state(ContextApp), call

    # What each tool does to the world (MCP ToolAnnotations; the gateway tells clients from them
    # whether a call that timed out may be retried). Every tool touches only this service's store.
    @service.tool(access="write", idempotent=False, destructive=False, open_world=False)
    async def create(
        title: str,
        ctx: Context,
        namespace: str = "default",
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        entries: list[EntryIn] | None = None,
    ) -> dict[str, Any]:
        """Create a context (optionally with initial entries). Namespaces 'system/...' need the admin scope.
        Fails with limit_exceeded when the org's tier allows no more contexts."""
        return await contexts.create(
            *served(ctx),
            title=title,
            namespace=namespace,
            tags=tags,
            metadata=metadata,
            entries=[dict(e) for e in entries] if entries else None,
        )

    @service.tool(access="write", idempotent=False, destructive=False, open_world=False)
    async def append(
        ctx_id: str,
        ctx: Context,
        entries: list[EntryIn] | None = None,
        role: str | None = None,
        content: str | None = None,
        name: str | None = None,
    ) -> dict[str, Any]:
        """Append one entry (role + content [+ name]) or many (entries). All or nothing: over the
        context's token limit, nothing is appended."""
        if entries is not None and (role is not None or content is not None or name is not None):
            raise invalid("give either entries, or role and content (and name) for one entry, not both")
        raw: list[dict[str, Any]]
        if entries is not None:
            raw = [dict(e) for e in entries]
        elif role is None and content is None:
            raw = []
        else:
            one: dict[str, Any] = {"role": role, "content": content}
            if name is not None:
                one["name"] = name
            raw = [one]
        return await appends.append(*served(ctx), ctx_id, raw)

    @service.tool(access="read", open_world=False)
    async def get(
        ctx_id: str,
        ctx: Context,
        last_n: int | None = None,
        last_n_tokens: int | None = None,
        after_seq: int | None = None,
    ) -> dict[str, Any]:
        """Read a context, oldest entry first: whole, or the window of the last_n entries and/or the
        last_n_tokens tokens (whole entries only). A whole read larger than one reply comes in pages:
        call again with after_seq = window.next_after_seq."""
        return await contexts.get(
            *served(ctx), ctx_id, last_n=last_n, last_n_tokens=last_n_tokens, after_seq=after_seq
        )

    @service.tool(access="read", name="list", open_world=False)
    async def list_contexts(
        ctx: Context,
        namespace: str | None = None,
        tag: str | None = None,
        updated_since: str | None = None,
        owner_org: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """List your contexts (or the system namespace's, or a namespace another org shared with yours:
        give owner_org and namespace), most recently updated first. Pass next_cursor to page on."""
        return await listing.find_contexts(
            *served(ctx),
            tool="list",
            namespace=namespace,
            tag=tag,
            updated_since=updated_since,
            text=None,
            in_content=False,
            owner_org=owner_org,
            limit=limit,
            cursor=cursor,
        )

    @service.tool(access="read", open_world=False)
    async def search(
        text: str,
        ctx: Context,
        namespace: str | None = None,
        tag: str | None = None,
        updated_since: str | None = None,
        in_content: bool = True,
        owner_org: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """Find contexts whose title (or, with in_content, any entry) contains text, case-insensitively;
        same filters and paging as list."""
        return await listing.find_contexts(
            *served(ctx),
            tool="search",
            namespace=namespace,
            tag=tag,
            updated_since=updated_since,
            text=text,
            in_content=in_content,
            owner_org=owner_org,
            limit=limit,
            cursor=cursor,
        )

    # Sets the given fields (metadata replaced whole): the same call again changes nothing more.
    @service.tool(access="write", idempotent=True, destructive=True, open_world=False)
    async def update(
        ctx_id: str,
        ctx: Context,
        title: str | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Change a context's title, tags and/or metadata (metadata is replaced as a whole)."""
        return await contexts.update(*served(ctx), ctx_id, title=title, tags=tags, metadata=metadata)

    @service.tool(access="write", idempotent=True, destructive=True, open_world=False)
    async def delete(ctx_id: str, ctx: Context) -> dict[str, Any]:
        """Delete a context with its entries and the shares given on it (owner org only)."""
        return await contexts.delete(*served(ctx), ctx_id)

    # One share per (target, grantee): a repeat sets the same access and expiry again (an
    # expires_in_s expiry counts from the latest call).
    @service.tool(access="write", idempotent=True, destructive=True, open_world=False)
    async def share(
        grantee: str,
        ctx: Context,
        ctx_id: str | None = None,
        namespace: str | None = None,
        access: str = "read",
        expires_at: str | None = None,
        expires_in_s: float | None = None,
        allow_resharing: bool = False,
        require_attribution: bool = False,
        owner_org: str | None = None,
    ) -> dict[str, Any]:
        """Give another org (grantee) read or write access to one context (ctx_id) or a namespace, until
        expires_at (ISO 8601) / for expires_in_s seconds, or until revoked. A grantee may reshare only
        when allow_resharing; require_attribution makes shared reads carry the owner org."""
        return await sharing.share(
            *served(ctx),
            grantee=grantee,
            access=access,
            ctx_id=ctx_id,
            namespace=namespace,
            owner_org=owner_org,
            expires_at=expires_at,
            expires_in_s=expires_in_s,
            allow_resharing=allow_resharing,
            require_attribution=require_attribution,
        )

    @service.tool(access="write", idempotent=True, destructive=True, open_world=False)
    async def revoke_share(
        ctx: Context,
        share_id: str | None = None,
        ctx_id: str | None = None,
        namespace: str | None = None,
        grantee: str | None = None,
        owner_org: str | None = None,
    ) -> dict[str, Any]:
        """Revoke a share (by share_id, or by grantee with ctx_id or namespace), with every reshare made
        from it. Takes effect on the grantee's next call."""
        return await sharing.revoke(
            *served(ctx),
            share_id=share_id,
            ctx_id=ctx_id,
            namespace=namespace,
            grantee=grantee,
            owner_org=owner_org,
        )

    @service.tool(access="read", open_world=False)
    async def shared_with_me(ctx: Context, limit: int = 20, cursor: str | None = None) -> dict[str, Any]:
        """Contexts and namespaces other orgs currently share with your org (expired grants left out)."""
        return await sharing.shared_with_me(*served(ctx), limit=limit, cursor=cursor)

    @service.tool(access="read", open_world=False)
    async def list_shares(
        ctx: Context,
        ctx_id: str | None = None,
        namespace: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """The shares your org has given on its own contexts and namespaces (optionally for one of them)."""
        return await sharing.list_shares(
            *served(ctx), ctx_id=ctx_id, namespace=namespace, limit=limit, cursor=cursor
        )

    @service.resource(
        "context://{ctx_id}",
        mime_type="application/json",
        description="A context with its entries (as the get tool returns it).",
    )
    async def context_resource(ctx_id: str) -> str:
        result = await contexts.get(*served(None), ctx_id, last_n=None, last_n_tokens=None, after_seq=None)
        return msgspec.json.encode(result).decode()

    return service


def app_of(service: MeshService) -> ContextApp:
    """The ContextApp of a running service built by build_service (for tests and the benchmark)."""
    return service.state(ContextApp)
