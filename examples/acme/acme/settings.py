"""Acme's settings, read once from the environment at start-up.

The process refuses to start (exit status 2) when a setting is missing or the
encryption key does not decode to exactly 32 bytes, because AES-256 needs a
256-bit key and a shorter one would silently weaken every envelope.
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass, field

PROVIDERS = ("zendesk", "intercom", "github", "slack", "jira", "linear")
KEY_BYTES = 32


class SettingsError(Exception):
    """A missing or invalid setting; the message never contains a secret value."""


@dataclass(frozen=True)
class Settings:
    database_url: str
    key: bytes = field(repr=False)
    jwt_secret: str = field(repr=False)
    provider_urls: dict[str, str]
    flaw: str = ""

    def provider_url(self, provider: str) -> str:
        return self.provider_urls[provider].rstrip("/")


def _required(env: dict[str, str], name: str) -> str:
    value = env.get(name, "")
    if not value:
        raise SettingsError(f"{name} is not set")
    return value


def decode_key(text: str, *, allow_short: bool = False) -> bytes:
    """Decode the base64 key; raise SettingsError unless it is 32 bytes."""
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise SettingsError("ACME_TOKEN_KEY is not valid base64") from None
    if len(key) != KEY_BYTES and not (allow_short and len(key) == 16):
        raise SettingsError(
            f"ACME_TOKEN_KEY decodes to {len(key)} bytes; AES-256-GCM needs "
            f"exactly {KEY_BYTES}. Generate one with: "
            "python -c 'import os, base64; "
            "print(base64.b64encode(os.urandom(32)).decode())'"
        )
    return key


def load_settings(env: dict[str, str] | None = None) -> Settings:
    """Read every setting, or raise SettingsError naming the first bad one."""
    env = dict(os.environ if env is None else env)
    flaw = env.get("ACME_FLAW", "")
    provider_urls = {}
    for provider in PROVIDERS:
        name = f"ACME_{provider.upper()}_URL"
        provider_urls[provider] = env.get(name) or f"https://{provider}.invalid"
    return Settings(
        database_url=_required(env, "ACME_DATABASE_URL"),
        key=decode_key(
            _required(env, "ACME_TOKEN_KEY"), allow_short=flaw == "short-key"
        ),
        jwt_secret=_required(env, "ACME_JWT_SECRET"),
        provider_urls=provider_urls,
        flaw=flaw,
    )
