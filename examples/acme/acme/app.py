"""The Starlette application: settings, vaults, database and the route modules.

Routes come from the modules in ``ROUTE_MODULES``; each defines
``routes() -> list[BaseRoute]``. A module that is not there yet is skipped,
so features can be added as files. ``/openapi.json`` is built from the
routes, so it lists every endpoint the application serves.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Mount, Route

from acme import flaws
from acme.db import Database
from acme.settings import Settings

logger = logging.getLogger("acme")

ROUTE_MODULES = ("acme.integrations", "acme.webhooks", "acme.indexer")


def health(request: Request) -> JSONResponse:
    """Report readiness once the database accepts a query."""
    request.app.state.db.ping()
    return JSONResponse({"status": "ok"})


def openapi(request: Request) -> JSONResponse:
    """Return the OpenAPI 3.1 document of every route."""
    return JSONResponse(build_openapi(request.app.routes))


def build_openapi(routes: list[BaseRoute], prefix: str = "") -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for route in routes:
        if isinstance(route, Mount):
            nested = build_openapi(route.routes, prefix + route.path)
            paths.update(nested["paths"])
            continue
        if not isinstance(route, Route) or not route.include_in_schema:
            continue
        summary = (route.endpoint.__doc__ or route.name).strip().splitlines()[0]
        item = paths.setdefault(prefix + route.path, {})
        for method in sorted((route.methods or set()) - {"HEAD"}):
            operation: dict[str, Any] = {
                "operationId": f"{route.name}_{method.lower()}",
                "summary": summary,
                "responses": {"200": {"description": "OK"}},
            }
            params = [
                {
                    "name": name,
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string"},
                }
                for name in route.param_convertors
            ]
            params += [
                {
                    "name": name,
                    "in": "query",
                    "required": True,
                    "schema": {"type": "string"},
                }
                for name in getattr(route.endpoint, "query_parameters", ())
            ]
            if params:
                operation["parameters"] = params
            if getattr(route.endpoint, "requires_user", False):
                operation["security"] = [{"bearer": []}]
            item[method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "Acme", "version": "1.0.0"},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}
        },
        "paths": paths,
    }


def collect_routes() -> list[BaseRoute]:
    routes: list[BaseRoute] = [
        Route("/health", health, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"], include_in_schema=False),
    ]
    for name in ROUTE_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name != name:
                raise
            continue
        routes.extend(module.routes())
    return routes


def create_app(settings: Settings) -> Starlette:
    """Build the application for `settings`."""
    app = Starlette(routes=collect_routes())
    app.state.settings = settings
    app.state.db = Database(settings.database_url)
    app.state.token_vault = flaws.token_vault(settings.flaw, settings.key)
    app.state.refresh_vault = flaws.refresh_vault(settings.flaw, settings.key)
    app.state.secret_vault = flaws.secret_vault(settings.flaw, settings.key)
    return app
