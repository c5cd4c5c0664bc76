"""Verification of the HS256 JWTs that Supabase's auth server issues."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from typing import Any

from starlette.requests import Request

AUDIENCE = "authenticated"


class AuthError(Exception):
    """A missing, malformed, forged or expired token."""


def _decode_segment(segment: str) -> bytes:
    padded = segment + "=" * (-len(segment) % 4)
    try:
        return base64.urlsafe_b64decode(padded)
    except (binascii.Error, ValueError):
        raise AuthError("malformed token") from None


def verify_jwt(token: str, secret: str) -> dict[str, Any]:
    """Return the claims of a valid token; raise AuthError otherwise."""
    parts = token.split(".")
    if len(parts) != 3:
        raise AuthError("malformed token")
    header_text, payload_text, signature_text = parts
    try:
        header = json.loads(_decode_segment(header_text))
        claims = json.loads(_decode_segment(payload_text))
    except ValueError:
        raise AuthError("malformed token") from None
    if not isinstance(header, dict) or header.get("alg") != "HS256":
        raise AuthError("unsupported token algorithm")

    expected = hmac.new(
        secret.encode(), f"{header_text}.{payload_text}".encode(), hashlib.sha256
    ).digest()
    if not hmac.compare_digest(expected, _decode_segment(signature_text)):
        raise AuthError("invalid token signature")

    if not isinstance(claims, dict) or not claims.get("sub"):
        raise AuthError("token has no subject")
    if not isinstance(claims.get("exp"), (int, float)) or claims["exp"] < time.time():
        raise AuthError("token expired")
    if claims.get("aud") != AUDIENCE or claims.get("role") != "authenticated":
        raise AuthError("token is not for a signed-in user")
    return claims


def request_claims(request: Request) -> dict[str, Any]:
    """Return the verified claims of the request's bearer token."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise AuthError("missing bearer token")
    return verify_jwt(token.strip(), request.app.state.settings.jwt_secret)
