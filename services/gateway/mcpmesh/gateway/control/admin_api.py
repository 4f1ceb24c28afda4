"""Mounting the admin API on an aiohttp application."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from mcpmesh.gateway.control.admin_http import guarded
from mcpmesh.gateway.control.errors import not_found
from mcpmesh.gateway.control.openapi import OPENAPI_PATH, document
from mcpmesh.gateway.control.routes import ROUTES

if TYPE_CHECKING:
    from mcpmesh.gateway.control.plane import ControlPlane


async def _openapi(_plane: ControlPlane, _request: web.Request) -> web.Response:
    return web.json_response(document())


async def _unknown(_plane: ControlPlane, request: web.Request) -> web.Response:
    raise not_found(f"no admin route {request.method} {request.path}: see {OPENAPI_PATH}")


def mount(plane: ControlPlane, app: web.Application) -> None:
    """Every route of the table, the OpenAPI document, and a JSON 404 for any other /admin path."""
    app.router.add_get(OPENAPI_PATH, guarded(plane, _openapi, public=True))
    for route in ROUTES:
        app.router.add_route(route.method, route.path, guarded(plane, route.handler))
    app.router.add_route("*", "/admin/{tail:.*}", guarded(plane, _unknown))
