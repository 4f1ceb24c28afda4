"""The mcp-rag service: knowledge bases, documents, hybrid search and answers with citations.

`build_service()` makes a fresh MeshService (tests run isolated instances)."""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver import Context

from mcpmesh.rag import batches, documents, ingest, kbs, retrieval, sharing
from mcpmesh.rag.access import resolve
from mcpmesh.rag.app import RagApp, lifespan_for
from mcpmesh.rag.batches import DocumentIn
from mcpmesh.rag.settings import RagSettings
from mcpmesh.rag.visibility import VisibleTo
from mcpmesh.service import Call, JobContext, MeshService, call_of
from mcpmesh.store import Index

INSTRUCTIONS = """\
Knowledge bases of your org's documents: create a knowledge base, add documents (text, markdown,
html, jsonl, pdf as base64), then search (hybrid lexical + semantic, every hit with its citation)
or answer a question from the sources (cited as [n]). System knowledge bases are readable by every org."""

STORE_KINDS: dict[str, list[Index]] = {
    "kbs": [],
    "documents": [Index(keys=[("kb", 1), ("doc_id", 1)])],
    "rag_settings": [],
    "shares": [Index(keys=[("kb", 1), ("grantee", 1), ("granted_by", 1)], unique=True)],
    "grants": [Index(keys=[("owner", 1), ("kb", 1)])],
}


def build_service(settings: RagSettings | None = None) -> MeshService:
    settings = settings or RagSettings.from_env()
    service = MeshService(
        "rag",
        description="Per-tenant knowledge bases with hybrid retrieval and citations",
        instructions=INSTRUCTIONS,
        store_kinds=STORE_KINDS,
        uses_vectors=True,
        grant_index="grants",
        lifespan=lifespan_for(settings),
    )

    def served(ctx: Context) -> tuple[RagApp, Call]:
        call = call_of(ctx)
        return call.state(RagApp), call

    @service.tool(access="write", idempotent=False, destructive=False, open_world=False)
    async def create_kb(
        kb: str, ctx: Context, title: str = "", description: str = "", system: bool = False
    ) -> dict[str, Any]:
        """Create a knowledge base (name: 1-40 lowercase letters, digits, '_'); system=true makes one
        every org can read (needs the admin scope)."""
        return await kbs.create(*served(ctx), kb=kb, title=title, description=description, system=system)

    @service.tool(access="read", open_world=False)
    async def list_kbs(ctx: Context) -> dict[str, Any]:
        """Your org's knowledge bases, then the system ones, with their counts."""
        return await kbs.list_kbs(*served(ctx))

    @service.tool(access="read", open_world=False)
    async def get_kb(kb: str, ctx: Context, owner_org: str | None = None) -> dict[str, Any]:
        """One knowledge base with its document, chunk and byte counts (owner_org: one another org
        shared with yours)."""
        return await kbs.get(*served(ctx), kb, owner_org)

    @service.tool(access="write", idempotent=True, destructive=True, open_world=False)
    async def delete_kb(kb: str, ctx: Context) -> dict[str, Any]:
        """Delete a knowledge base with all its documents and vectors (owner org only)."""
        return await kbs.delete(*served(ctx), kb)

    # The same content again changes nothing (idempotent by content hash); calls mcp-llm embed.
    @service.tool(access="write", idempotent=True, destructive=False, budget_s=300)
    async def add_document(
        kb: str,
        content: str,
        ctx: Context,
        type: str = "text",
        title: str = "",
        doc_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        owner_org: str | None = None,
        visible_to: VisibleTo | None = None,
    ) -> dict[str, Any]:
        """Add a document (type: text, markdown, html, jsonl, or pdf with content the PDF file
        base64-encoded) by content: chunked by its structure, embedded, indexed. doc_id defaults to
        one derived from the content, so sending the same content again answers unchanged=true.
        metadata (flat) can be filtered on as meta.<key>. visible_to {keys: [key ids], scopes:
        ['<service>:read|write'], tags: [key tags]} limits who sees it."""
        return await ingest.add(
            *served(ctx),
            kb,
            owner_org,
            content=content,
            doc_type=type,
            title=title,
            doc_id=doc_id,
            metadata=metadata,
            visible_to=visible_to,
        )

    # Fetches the URL (open world); the page may change, so the same call may add another document.
    @service.tool(access="write", idempotent=False, destructive=False, budget_s=300)
    async def add_url(
        kb: str,
        url: str,
        ctx: Context,
        type: str | None = None,
        title: str = "",
        doc_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        owner_org: str | None = None,
        visible_to: VisibleTo | None = None,
    ) -> dict[str, Any]:
        """Add the document at a public http(s) URL (when the platform allows it), as add_document:
        its type from the content type (text/plain, text/markdown, text/html, application/pdf,
        application/jsonl) unless type is given."""
        return await ingest.add_url(
            *served(ctx),
            kb,
            owner_org,
            url,
            type,
            title=title,
            doc_id=doc_id,
            metadata=metadata,
            visible_to=visible_to,
        )

    @service.job_tool(access="write", resumable=True, budget_s=6 * 3600)
    async def add_documents(
        kb: str, documents: list[DocumentIn], job: JobContext, owner_org: str | None = None
    ) -> dict[str, Any]:
        """Add many documents to a knowledge base as a job (each as add_document: content, type,
        title, doc_id, metadata, visible_to): yours, or with owner_org one shared with your org for
        writing. Progress counts documents and chunks done; a document that fails is reported in
        the result and the others go on; deleting the kb stops the job."""
        return await batches.run(service.state(RagApp), job, kb, documents, owner_org)

    @service.tool(access="write", idempotent=True, destructive=True, budget_s=300)
    async def update_document(
        kb: str,
        doc_id: str,
        content: str,
        ctx: Context,
        type: str = "text",
        title: str = "",
        metadata: dict[str, Any] | None = None,
        owner_org: str | None = None,
        visible_to: VisibleTo | None = None,
    ) -> dict[str, Any]:
        """A new version of a document (the old version's chunks leave the index; versions are listed)."""
        return await ingest.update(
            *served(ctx),
            kb,
            owner_org,
            content=content,
            doc_type=type,
            title=title,
            doc_id=doc_id,
            metadata=metadata,
            visible_to=visible_to,
        )

    @service.tool(access="read", open_world=False)
    async def get_document(
        kb: str, doc_id: str, ctx: Context, owner_org: str | None = None
    ) -> dict[str, Any]:
        """A document with its text (chunk offsets point into it) and its versions."""
        return await documents.get(*served(ctx), kb, doc_id, owner_org)

    @service.tool(access="read", open_world=False)
    async def list_documents(
        kb: str, ctx: Context, limit: int = 20, after: str | None = None, owner_org: str | None = None
    ) -> dict[str, Any]:
        """A knowledge base's documents by doc_id; pass next_after as after to page on."""
        return await documents.list_documents(*served(ctx), kb, limit, after, owner_org)

    @service.tool(access="write", idempotent=True, destructive=True, open_world=False)
    async def delete_document(
        kb: str, doc_id: str, ctx: Context, owner_org: str | None = None
    ) -> dict[str, Any]:
        """Delete a document and its vectors."""
        return await documents.delete(*served(ctx), kb, doc_id, owner_org)

    @service.tool(access="read")
    async def search(
        query: str,
        kb: str,
        ctx: Context,
        top_k: int | None = None,
        min_score: float | None = None,
        dense_weight: float | None = None,
        filter: dict[str, Any] | None = None,
        owner_org: str | None = None,
    ) -> dict[str, Any]:
        """Hybrid search (lexical + dense, fused by RRF): the best chunks, each with its citation (kb,
        doc_id, version, title, section, chunk, start/end offsets, score, owner_org). top_k,
        min_score (dense similarity) and dense_weight override your org's settings within its
        bounds; dense_weight selects the mode: 1 dense only, 0 lexical only, between both fused
        (default 0.5); filter: {doc|title|section|meta.<key>: value or list of values}."""
        return await retrieval.search(
            *served(ctx),
            query=query,
            kb=kb,
            top_k=top_k,
            min_score=min_score,
            dense_weight=dense_weight,
            filter=filter,
            owner_org=owner_org,
        )

    @service.tool(access="read", budget_s=300)
    async def answer(
        question: str,
        kb: str,
        ctx: Context,
        top_k: int | None = None,
        min_score: float | None = None,
        filter: dict[str, Any] | None = None,
        owner_org: str | None = None,
    ) -> dict[str, Any]:
        """Answer from the knowledge base: search, then mcp-llm chat with the hits as numbered sources
        (cited [n]); the sources are returned. With no relevant source it says so (answered=false)."""
        return await retrieval.answer(
            *served(ctx),
            question=question,
            kb=kb,
            top_k=top_k,
            min_score=min_score,
            filter=filter,
            owner_org=owner_org,
        )

    # One share per (kb, grantee, granting org): a repeat sets the same fields again.
    @service.tool(access="write", idempotent=True, destructive=True, open_world=False)
    async def share_kb(
        kb: str,
        grantee: str,
        ctx: Context,
        access: str = "read",
        expires_at: str | None = None,
        expires_in_s: float | None = None,
        allow_resharing: bool = False,
        require_attribution: bool = False,
        owner_org: str | None = None,
    ) -> dict[str, Any]:
        """Give another org (grantee) read (search, answer, get, list) or write (also documents)
        access to a knowledge base, until expires_at / for expires_in_s seconds, or until revoked.
        With owner_org: reshare a kb shared with you (when its grant allows resharing)."""
        app, call = served(ctx)
        target = await resolve(app, call, kb, "share", owner_org)
        return await sharing.share(
            app,
            call,
            target,
            grantee=grantee,
            access=access,
            expires_at=expires_at,
            expires_in_s=expires_in_s,
            allow_resharing=allow_resharing,
            require_attribution=require_attribution,
        )

    @service.tool(access="write", idempotent=True, destructive=True, open_world=False)
    async def revoke_kb_share(
        kb: str,
        ctx: Context,
        grantee: str | None = None,
        share_id: str | None = None,
        owner_org: str | None = None,
    ) -> dict[str, Any]:
        """Revoke a share on a knowledge base (by grantee or share_id) with every reshare made from it;
        with owner_org, the reshares your org made of another org's kb."""
        app, call = served(ctx)
        target = await resolve(app, call, kb, "read", owner_org)
        return await sharing.revoke(app, call, target, grantee, share_id)

    @service.tool(access="read", open_world=False)
    async def kb_shares(ctx: Context, kb: str | None = None) -> dict[str, Any]:
        """The shares your org gave on its knowledge bases (optionally one)."""
        return await sharing.list_shares(call_of(ctx), kb)

    @service.tool(access="read", open_world=False)
    async def shared_with_me(ctx: Context) -> dict[str, Any]:
        """Knowledge bases other orgs currently share with yours (use their kb and owner_org)."""
        return await sharing.shared_with_me(call_of(ctx))

    @service.tool(access="read", open_world=False)
    async def retrieval_settings(ctx: Context) -> dict[str, Any]:
        """Your org's retrieval settings (defaults and the bounds a call may override within)."""
        return await retrieval.org_settings(call_of(ctx))

    @service.tool(access="write", idempotent=True, destructive=True, open_world=False)
    async def set_retrieval_settings(
        ctx: Context,
        top_k: int | None = None,
        max_top_k: int | None = None,
        min_score: float | None = None,
        min_score_floor: float | None = None,
        dense_weight: float | None = None,
        require_attribution: bool | None = None,
    ) -> dict[str, Any]:
        """Set your org's retrieval settings (unset fields keep their value)."""
        changes = {
            "top_k": top_k,
            "max_top_k": max_top_k,
            "min_score": min_score,
            "min_score_floor": min_score_floor,
            "dense_weight": dense_weight,
            "require_attribution": require_attribution,
        }
        return await retrieval.set_settings(call_of(ctx), changes)

    return service
