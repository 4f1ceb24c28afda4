"""The mcp-llm service: every org's LLM providers behind one set of tools.

`build_service()` makes a fresh MeshService whose lifespan makes the LlmApp its tools share
(reached with `call.state(LlmApp)`), so tests can run isolated instances.
"""

from __future__ import annotations

from typing import Any

import litellm
from mcp.server.mcpserver import Context

from mcpmesh.llm import admin, calls
from mcpmesh.llm.app import LlmApp, lifespan_for
from mcpmesh.llm.cache import CACHE_INDEXES, CACHE_KIND
from mcpmesh.llm.inputs import chat_request, check_messages, check_texts
from mcpmesh.llm.limits import LIMITS_INDEXES, LIMITS_KIND
from mcpmesh.llm.orgconfig import CONFIG_KIND
from mcpmesh.llm.providers import invalid
from mcpmesh.llm.settings import LlmSettings
from mcpmesh.llm.usage import USAGE_INDEXES, USAGE_KIND, report
from mcpmesh.proto.headers import STREAM
from mcpmesh.service import TOOL_SECRET_ARGS_META, Call, MeshService, call_of

INSTRUCTIONS = """\
LLM calls for your organization: chat (optionally streamed as progress), embed, count_tokens.
Models are asked for by name or alias (default, fast, cheap, embed, or your org's own); `models`
lists what your org may use. Every answer says which provider and model served it and which
fallbacks were tried. Admins (llm:admin) add their org's own providers and keys (write-only)."""

STORE_KINDS = {
    CONFIG_KIND: [],
    USAGE_KIND: USAGE_INDEXES,
    CACHE_KIND: CACHE_INDEXES,
    LIMITS_KIND: LIMITS_INDEXES,
}
ADMIN = "llm:admin"


def build_service(settings: LlmSettings | None = None) -> MeshService:
    settings = settings or LlmSettings.from_env()
    service = MeshService(
        "llm",
        description="Every org's LLM providers behind one service",
        instructions=INSTRUCTIONS,
        store_kinds=STORE_KINDS,
        lifespan=lifespan_for(settings),
        secrets=True,  # org provider keys (keys.py); the kit adds llm_secret_set/secrets/secret_delete
    )

    def served(ctx: Context) -> tuple[LlmApp, Call]:
        call = call_of(ctx)
        return call.state(LlmApp), call

    # chat and embed need llm:read, but are not read-only for a client: every call spends the
    # org's tokens (billed), so a call that timed out is not "safe to retry" (the gateway says so).
    @service.tool(
        access="read", read_only=False, idempotent=False, destructive=False, open_world=True, budget_s=300
    )
    async def chat(
        messages: list[dict[str, Any]],
        ctx: Context,
        model: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        stop: str | list[str] | None = None,
        response_format: dict[str, Any] | None = None,
        tools: list[dict[str, Any]] | None = None,
        tool_choice: str | dict[str, Any] | None = None,
        stream: bool | None = None,
        cache: bool | None = None,
    ) -> dict[str, Any]:
        """Chat completion. model: a model name, an alias (default, fast, cheap, ...) or
        '<provider>/<model>'. With stream (default: when the caller relays progress), tokens arrive
        as progress notifications while the call runs. Deterministic requests (temperature 0, or
        cache: true) are answered from the org's cache when seen before; cache: false bypasses it."""
        app, call = served(ctx)
        request = chat_request(
            messages,
            temperature=temperature,
            max_tokens=max_tokens,
            stop=stop,
            response_format=response_format,
            tools=tools,
            tool_choice=tool_choice,
        )
        streaming = stream if stream is not None else call.headers.get(STREAM) == "1"
        sent = 0

        async def on_token(text: str) -> None:
            nonlocal sent
            sent += 1
            await ctx.report_progress(sent, None, text)

        return await calls.chat(
            app,
            call,
            request,
            model=model,
            use_cache=cache if cache is not None else temperature == 0,
            on_token=on_token if streaming else None,
        )

    @service.tool(
        access="read", read_only=False, idempotent=False, destructive=False, open_world=True, budget_s=120
    )
    async def embed(
        texts: list[str], ctx: Context, model: str | None = None, cache: bool = True
    ) -> dict[str, Any]:
        """Embed texts (sent to the provider in batches); vectors in the order of texts. Texts embedded
        before with the same model come from the org's cache unless cache is false."""
        app, call = served(ctx)
        return await calls.embed(
            app, call, check_texts(texts, app.settings.max_embed_texts), model=model, use_cache=cache
        )

    @service.tool(access="read", open_world=False)
    async def models(ctx: Context) -> dict[str, Any]:
        """The models your org may use (its own providers first), with context window, prices and who
        bills them, and the aliases."""
        return await admin.models(*served(ctx))

    @service.tool(access="read", open_world=False)
    async def count_tokens(
        ctx: Context,
        messages: list[dict[str, Any]] | None = None,
        text: str | None = None,
        model: str | None = None,
    ) -> dict[str, Any]:
        """Tokens of messages or a text for a model (its tokenizer when litellm knows it, else cl100k)."""
        app, call = served(ctx)
        if (messages is None) == (text is None):
            raise invalid("give either messages or text")
        config = await app.config(call)
        allowed = (await call.org_settings()).allowed_models
        deployment = app.routing.select(config, allowed, model, "chat").chain[0]
        counted = litellm.token_counter(
            model=deployment.litellm_model,
            messages=check_messages(messages) if messages is not None else None,
            text=text,
        )
        return {"tokens": counted, "model": deployment.model.name, "served_by": deployment.label}

    @service.tool(access="read", open_world=False)
    async def usage(ctx: Context, days: int = 31) -> dict[str, Any]:
        """Your org's tokens and cost by day and model (who billed it: the mesh, or your provider on
        your own key), with totals and the cache hit rate."""
        app, call = served(ctx)
        await app.buckets.settled(call.org_id)
        return await report(call.store, max(1, min(days, 366)))

    @service.tool(scope=ADMIN, access="read", open_world=False)
    async def providers(ctx: Context) -> dict[str, Any]:
        """Your org's providers (a key shows only as fingerprint and last four), the system's, and the
        aliases in force."""
        return await admin.providers(*served(ctx))

    @service.tool(
        scope=ADMIN,
        access="write",
        idempotent=True,
        destructive=True,
        open_world=False,
        meta={TOOL_SECRET_ARGS_META: ["api_key"]},
    )
    async def set_provider(
        name: str,
        models: list[dict[str, Any]],
        ctx: Context,
        kind: str = "openai",
        api_base: str | None = None,
        api_key: str | None = None,
        rpm: int | None = None,
        tpm: int | None = None,
    ) -> dict[str, Any]:
        """Add or replace one of your org's providers: kind (a litellm provider; 'openai' for any
        OpenAI-compatible endpoint at api_base), its models ({name, model?, mode?: chat|embedding,
        class?, input_cost_per_token?, output_cost_per_token?, context_window?}), rpm/tpm limits.
        api_key is stored sealed and never shown again; omitted, the stored key is kept."""
        spec = {"name": name, "kind": kind, "api_base": api_base, "models": models, "rpm": rpm, "tpm": tpm}
        return await admin.set_provider(*served(ctx), spec, api_key)

    @service.tool(scope=ADMIN, access="write", idempotent=True, destructive=True, open_world=False)
    async def remove_provider(name: str, ctx: Context) -> dict[str, Any]:
        """Remove one of your org's providers and its key."""
        return await admin.remove_provider(*served(ctx), admin.check_name(name))

    @service.tool(scope=ADMIN, access="write", idempotent=True, destructive=True, open_world=False)
    async def set_aliases(aliases: dict[str, str | None], ctx: Context) -> dict[str, Any]:
        """Set your org's model aliases, e.g. {"default": "llama3", "fast": null} (null removes one)."""
        return await admin.set_aliases(*served(ctx), aliases)

    return service


def app_of(service: MeshService) -> LlmApp:
    """The LlmApp of a running service built by build_service (for tests)."""
    return service.state(LlmApp)
