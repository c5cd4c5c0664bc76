"""Deliberate violations, switched on by ``ACME_FLAW`` for Assay's own tests.

Each flaw breaks exactly one claim, so a test can show that the control
owning that claim fails while the others still pass. With ``ACME_FLAW``
unset (the default) none of this code runs.
"""

from __future__ import annotations

import base64
import os

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from acme.vault import PREFIX, DecryptionError, Vault

FLAWS = (
    "aes128",  # tokens sealed with AES-128-GCM under the first 16 key bytes
    "cbc",  # tokens sealed with AES-256-CBC: no authentication
    "ctr",  # tokens sealed with AES-256-CTR: tampering goes unnoticed
    "fixed-nonce",  # AES-256-GCM with the same nonce for every token
    "plaintext",  # tokens stored as they are
    "base64",  # tokens stored base64-encoded only
    "refresh-plaintext",  # refresh tokens stored as they are
    "key-at-startup",  # the key printed when the process starts
    "key-in-error",  # the key put in the decryption error response
    "token-in-listing",  # the access token returned by the integrations listing
    "token-in-header",  # the access token returned in a sync response header
    "webhook-plaintext",  # webhook signing secrets stored as they are
    "short-key",  # a 16-byte key accepted at start-up
)


class _Aes128Vault(Vault):
    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key[:16])


class _FixedNonceVault(Vault):
    def seal(self, plaintext: str) -> str:
        sealed = self._aead.encrypt(b"\0" * 12, plaintext.encode(), None)
        return PREFIX + base64.b64encode(b"\0" * 12 + sealed).decode()


class _PlaintextVault(Vault):
    def seal(self, plaintext: str) -> str:
        return plaintext

    def open(self, envelope: str) -> str:
        return envelope


class _Base64Vault(Vault):
    def seal(self, plaintext: str) -> str:
        return base64.b64encode(plaintext.encode()).decode()

    def open(self, envelope: str) -> str:
        return base64.b64decode(envelope).decode()


class _CbcVault(Vault):
    def __init__(self, key: bytes) -> None:
        self._key = key

    def seal(self, plaintext: str) -> str:
        iv = os.urandom(16)
        padder = padding.PKCS7(128).padder()
        data = padder.update(plaintext.encode()) + padder.finalize()
        encryptor = Cipher(algorithms.AES(self._key), modes.CBC(iv)).encryptor()
        sealed = encryptor.update(data) + encryptor.finalize()
        return PREFIX + base64.b64encode(iv + sealed).decode()

    def open(self, envelope: str) -> str:
        data = base64.b64decode(envelope[len(PREFIX) :])
        decryptor = Cipher(algorithms.AES(self._key), modes.CBC(data[:16])).decryptor()
        padded = decryptor.update(data[16:]) + decryptor.finalize()
        unpadder = padding.PKCS7(128).unpadder()
        try:
            return (unpadder.update(padded) + unpadder.finalize()).decode()
        except ValueError:
            raise DecryptionError("stored value failed to decrypt") from None


class _CtrVault(Vault):
    def __init__(self, key: bytes) -> None:
        self._key = key

    def seal(self, plaintext: str) -> str:
        nonce = os.urandom(16)
        encryptor = Cipher(algorithms.AES(self._key), modes.CTR(nonce)).encryptor()
        sealed = encryptor.update(plaintext.encode()) + encryptor.finalize()
        return PREFIX + base64.b64encode(nonce + sealed).decode()

    def open(self, envelope: str) -> str:
        data = base64.b64decode(envelope[len(PREFIX) :])
        decryptor = Cipher(algorithms.AES(self._key), modes.CTR(data[:16])).decryptor()
        plain = decryptor.update(data[16:]) + decryptor.finalize()
        return plain.decode("utf-8", errors="replace")


_TOKEN_VAULTS = {
    "aes128": _Aes128Vault,
    "cbc": _CbcVault,
    "ctr": _CtrVault,
    "fixed-nonce": _FixedNonceVault,
    "plaintext": _PlaintextVault,
    "base64": _Base64Vault,
}


def token_vault(flaw: str, key: bytes) -> Vault:
    """Return the vault for OAuth tokens: AES-256-GCM unless a token flaw is set."""
    if len(key) != 32:
        return _Aes128Vault(key)
    return _TOKEN_VAULTS.get(flaw, Vault)(key)


def refresh_vault(flaw: str, key: bytes) -> Vault:
    if flaw == "refresh-plaintext":
        return _PlaintextVault(key)
    return token_vault(flaw, key)


def secret_vault(flaw: str, key: bytes) -> Vault:
    """Return the vault for webhook signing secrets."""
    if flaw == "webhook-plaintext":
        return _PlaintextVault(key)
    if len(key) != 32:
        return _Aes128Vault(key)
    return Vault(key)
