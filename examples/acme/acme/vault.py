"""The token vault: AES-256-GCM envelopes for OAuth tokens and webhook secrets.

Envelope: the text ``v1:`` followed by standard, padded base64 of
``nonce || ciphertext || tag``, where the nonce is 12 random bytes (96 bits,
fresh for every seal) and the tag is GCM's 16-byte tag. No associated data is
bound, so an envelope decrypts wherever it is stored.

Error messages state that decryption failed and contain nothing of the key or
the value.
"""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = "v1:"
NONCE_BYTES = 12
TAG_BYTES = 16


class DecryptionError(Exception):
    """A stored value that is not a valid envelope under the current key."""


class Vault:
    """Seals and opens text values with one 256-bit key."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("the vault needs a 32-byte key")
        self._aead = AESGCM(key)

    def __repr__(self) -> str:
        return "Vault(AES-256-GCM)"

    def seal(self, plaintext: str) -> str:
        """Encrypt `plaintext` under a fresh random nonce; return the envelope."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext.encode("utf-8"), None)
        return PREFIX + base64.b64encode(nonce + sealed).decode("ascii")

    def open(self, envelope: str) -> str:
        """Decrypt an envelope; raise DecryptionError when it is not authentic."""
        if not envelope.startswith(PREFIX):
            raise DecryptionError("stored value is not a v1 envelope")
        try:
            data = base64.b64decode(envelope[len(PREFIX) :], validate=True)
        except (binascii.Error, ValueError):
            raise DecryptionError("stored value is not valid base64") from None
        if len(data) < NONCE_BYTES + TAG_BYTES:
            raise DecryptionError("stored value is too short to be an envelope")
        try:
            plaintext = self._aead.decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], None)
        except InvalidTag:
            raise DecryptionError("stored value failed authentication") from None
        return plaintext.decode("utf-8")
