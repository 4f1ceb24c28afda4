"""Provider failures onto the mesh's error model: what went wrong and what to do, never the
provider's own text (it may echo internals) nor anything of a key."""

from __future__ import annotations

import litellm

from mcpmesh.proto.errors import ErrorCode, MeshException


def provider_error(exc: Exception, model: str, tried: list[str]) -> MeshException:
    """The MeshException for a call whose every provider failed (`tried`: the ones attempted)."""
    where = f"model {model!r} (tried {', '.join(tried) or 'no provider'})"
    status = getattr(exc, "status_code", None)
    details = {"model": model, "tried": tried, "provider_status": status if isinstance(status, int) else None}
    if isinstance(exc, litellm.ContextWindowExceededError):
        code, message, retryable = (
            ErrorCode.INVALID_REQUEST,
            f"the messages do not fit the context window of {where}: shorten them or use a larger model",
            False,
        )
    elif isinstance(exc, litellm.ContentPolicyViolationError):
        code, message, retryable = (
            ErrorCode.INVALID_REQUEST,
            f"the provider refused the content for {where}",
            False,
        )
    elif isinstance(exc, litellm.RateLimitError):
        code, message, retryable = (
            ErrorCode.RATE_LIMITED,
            f"every provider of {where} is rate-limited or at capacity: retry later",
            True,
        )
    elif isinstance(exc, litellm.Timeout):
        code, message, retryable = (
            ErrorCode.TIMEOUT,
            f"no provider of {where} answered in time: retry later",
            True,
        )
    elif isinstance(exc, litellm.AuthenticationError | litellm.PermissionDeniedError):
        code, message, retryable = (
            ErrorCode.UNAVAILABLE,
            f"the provider refused the configured API key for {where}: an admin must set a valid key "
            "(llm_set_provider)",
            False,
        )
    elif isinstance(exc, litellm.NotFoundError):
        code, message, retryable = (
            ErrorCode.NOT_FOUND,
            f"the provider does not know {where}: check the model id in the provider table",
            False,
        )
    elif isinstance(exc, litellm.BadRequestError | litellm.UnprocessableEntityError):
        code, message, retryable = (
            ErrorCode.INVALID_REQUEST,
            f"the provider refused the request as invalid (HTTP {status}) for {where}: check messages and parameters",
            False,
        )
    else:  # 5xx, connection errors, anything else from a provider
        code, message, retryable = (
            ErrorCode.UNAVAILABLE,
            f"no provider of {where} could serve the request: retry later",
            True,
        )
    return MeshException(code, message, retryable=retryable, details=details)
