"""Provider failures onto the mesh's error model: what went wrong and what to do, never the
provider's own text (it may echo internals) nor anything of a key."""

from __future__ import annotations

from typing import Final

import litellm

from mcpmesh.proto.errors import ErrorCode, MeshException

#: First match wins (subclasses before their bases): exception types, code, retryable, message
#: ({where}: the model and the deployments tried; {status}: the provider's HTTP status).
_RULES: Final[list[tuple[tuple[type[Exception], ...], ErrorCode, bool, str]]] = [
    (
        (litellm.ContextWindowExceededError,),
        ErrorCode.INVALID_REQUEST,
        False,
        "the messages do not fit the context window of {where}: shorten them or use a larger model",
    ),
    (
        (litellm.ContentPolicyViolationError,),
        ErrorCode.INVALID_REQUEST,
        False,
        "the provider refused the content for {where}",
    ),
    (
        (litellm.RateLimitError,),
        ErrorCode.RATE_LIMITED,
        True,
        "every provider of {where} is rate-limited or at capacity: retry later",
    ),
    ((litellm.Timeout,), ErrorCode.TIMEOUT, True, "no provider of {where} answered in time: retry later"),
    (
        (litellm.AuthenticationError, litellm.PermissionDeniedError),
        ErrorCode.UNAVAILABLE,
        False,
        "the provider refused the configured API key for {where}: an admin must set a valid key "
        "(llm_set_provider)",
    ),
    (
        (litellm.NotFoundError,),
        ErrorCode.NOT_FOUND,
        False,
        "the provider does not know {where}: check the model id in the provider table",
    ),
    (
        (litellm.BadRequestError, litellm.UnprocessableEntityError),
        ErrorCode.INVALID_REQUEST,
        False,
        "the provider refused the request as invalid (HTTP {status}) for {where}: check messages and parameters",
    ),
]
#: 5xx, connection errors, anything else from a provider.
_OTHERWISE: Final = (
    ErrorCode.UNAVAILABLE,
    True,
    "no provider of {where} could serve the request: retry later",
)


def provider_error(exc: Exception, model: str, tried: list[str]) -> MeshException:
    """The MeshException for a call whose every provider failed (`tried`: the ones attempted)."""
    status = getattr(exc, "status_code", None)
    status = status if isinstance(status, int) else None
    code, retryable, template = next(
        ((code, retryable, text) for types, code, retryable, text in _RULES if isinstance(exc, types)),
        _OTHERWISE,
    )
    where = f"model {model!r} (tried {', '.join(tried) or 'no provider'})"
    return MeshException(
        code,
        template.format(where=where, status=status),
        retryable=retryable,
        details={"model": model, "tried": tried, "provider_status": status},
    )
