"""Admin API errors: an HTTP status, a machine code and one clear sentence, as a JSON body."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from mcpmesh.proto.errors import ErrorCode


class ApiError(Exception):
    """Raised by admin handlers; rendered as `{"error": {"code", "message"}}` with `status`."""

    def __init__(self, status: int, code: ErrorCode, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra

    def response(self) -> web.Response:
        body: dict[str, Any] = {"error": {"code": self.code.value, "message": self.message, **self.extra}}
        return web.json_response(body, status=self.status)


def bad_request(message: str) -> ApiError:
    return ApiError(400, ErrorCode.INVALID_REQUEST, message)


def not_found(message: str) -> ApiError:
    return ApiError(404, ErrorCode.NOT_FOUND, message)


def conflict(message: str) -> ApiError:
    return ApiError(409, ErrorCode.CONFLICT, message)


def unauthorized() -> ApiError:
    return ApiError(
        401,
        ErrorCode.UNAUTHENTICATED,
        "admin authentication required: send the admin key as Authorization: Bearer <key> or x-api-key",
    )
