"""The OpenAPI 3.1 document of the admin API, rendered from the route table."""

from __future__ import annotations

from typing import Any

from mcpmesh.gateway.control import schemas
from mcpmesh.gateway.control.routes import ROUTES

_REASONS = {
    400: "invalid input: the message says which field and what is expected",
    401: "missing or wrong admin key",
    404: "no such organization or key",
    409: "conflicts with the current state (e.g. a revoked key, an org being deleted)",
    413: "request body too large",
    502: "a service did not complete its part; the body lists each service's result",
}

OPENAPI_PATH = "/admin/openapi.json"


def document(version: str = "0.1.0") -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        op: dict[str, Any] = {
            "operationId": route.handler.__name__,
            "summary": route.summary,
            "tags": [route.tag],
            "security": [{"adminBearer": []}, {"adminApiKey": []}],
            "responses": {
                str(route.status): {
                    "description": "success",
                    "content": {"application/json": {"schema": route.response or {"type": "object"}}},
                },
            },
        }
        for code in sorted(set(route.errors) | {401}):
            op["responses"][str(code)] = {
                "description": _REASONS[code],
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            }
        if route.params:
            op["parameters"] = [
                {
                    "name": p.name,
                    "in": p.where,
                    "required": p.where == "path",
                    "description": p.description,
                    "schema": p.schema,
                }
                for p in route.params
            ]
        if route.body is not None:
            op["requestBody"] = {
                "required": route.method != "POST" or "rotate" not in route.path,
                "content": {"application/json": {"schema": route.body}},
            }
        paths.setdefault(route.path, {})[route.method.lower()] = op
    paths[OPENAPI_PATH] = {
        "get": {
            "operationId": "openapi",
            "summary": "This document (no authentication needed)",
            "tags": ["meta"],
            "security": [],
            "responses": {
                "200": {"description": "OpenAPI 3.1 document", "content": {"application/json": {}}}
            },
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "mcpmesh admin API",
            "version": version,
            "description": "Organizations, API keys, usage and audit of the mcpmesh gateway. "
            "Authenticate with the admin key (MCPMESH_ADMIN_KEY) as Authorization: Bearer or x-api-key; "
            "tenant API keys are always refused.",
        },
        "paths": paths,
        "components": {
            "schemas": {"Error": schemas.ERROR},
            "securitySchemes": {
                "adminBearer": {"type": "http", "scheme": "bearer"},
                "adminApiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
            },
        },
    }
