"""The application's API endpoints: configured ones and those its OpenAPI lists.

An endpoint path is filled in for one tenant: tenant parameters get the
tenant's id, ``{provider}`` each configured provider, any other parameter a
placeholder value. DELETE operations found only in the OpenAPI document are
listed as not called, because they would destroy the data other checks use.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Callable

import httpx

from assay.config import Config
from assay.target import AppClient

__all__ = ["collect_endpoints", "response_text"]

logger = logging.getLogger(__name__)

TENANT_PARAMETERS = {
    "tenant_id",
    "tenantid",
    "tenant",
    "org_id",
    "orgid",
    "org",
    "organization_id",
    "organizationid",
    "organisation_id",
}
METHODS = ("get", "post", "put", "patch", "delete")


def response_text(response: httpx.Response) -> bytes:
    """Return the status line, headers and body of a response as one byte string."""
    lines = [f"HTTP {response.status_code}"]
    lines.extend(f"{name}: {value}" for name, value in response.headers.multi_items())
    return "\n".join(lines).encode() + b"\n\n" + response.content


def _openapi(config: Config, app: AppClient) -> tuple[list[tuple[str, str]], str]:
    path = config.app.openapi_path
    if not path:
        return [], "app.openapi_path is not set"
    try:
        response = app.request("GET", path)
        document = response.json() if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        document = None
    if not isinstance(document, dict) or not isinstance(document.get("paths"), dict):
        return [], f"GET {path} returned no OpenAPI document"
    found = []
    for route, item in document["paths"].items():
        if not isinstance(item, dict):
            continue
        for method in METHODS:
            operation = item.get(method)
            if isinstance(operation, dict):
                found.append((method.upper(), route + _query(operation)))
    return found, f"GET {path}: {len(found)} operations"


def _query(operation: dict[str, Any]) -> str:
    """Return ``?name={name}&...`` for the operation's required query parameters."""
    names = [
        p["name"]
        for p in operation.get("parameters") or []
        if isinstance(p, dict)
        and p.get("in") == "query"
        and p.get("required")
        and isinstance(p.get("name"), str)
    ]
    return "?" + "&".join(f"{n}={{{n}}}" for n in names) if names else ""


def collect_endpoints(
    config: Config, app: AppClient
) -> tuple[Callable[[str], list[tuple[str, str]]], list[str], dict[str, Any]]:
    """Return a function filling endpoints in for a tenant, skipped ones, sources."""
    from assay.encryption import parse_request

    enc = config.encryption
    configured = [
        parse_request(config, ("encryption", "endpoints", index), text)
        for index, text in enumerate(enc.endpoints)
    ]
    discovered, note = _openapi(config, app)
    operations = [(r.method, r.path) for r in configured]
    skipped = []
    for method, route in discovered:
        if (method, route.split("?")[0]) in [
            (m, r.split("?")[0]) for m, r in operations
        ]:
            continue
        if method == "DELETE":
            skipped.append(f"{method} {route}")
            continue
        operations.append((method, route))
    providers = list(dict.fromkeys([*enc.token_providers, *enc.secret_providers]))

    def fill(tenant_id: str) -> list[tuple[str, str]]:
        filled = []
        for method, route in operations:
            for provider in providers if "{provider}" in route else providers[:1]:
                filled.append((method, _fill(route, tenant_id, provider)))
        return list(dict.fromkeys(filled))

    sources = {"configured": len(configured), "openapi": note}
    return fill, skipped, sources


def _fill(route: str, tenant_id: str, provider: str) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name.lower() in TENANT_PARAMETERS:
            return tenant_id
        if name == "provider":
            return provider
        return "assay-placeholder"

    return re.sub(r"\{(\w+)\}", value, route)
