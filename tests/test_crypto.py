"""Independent AES-256-GCM decryption: envelope detection, tampering, diagnosis."""

from __future__ import annotations

import base64
import json
import os

import pytest
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from assay import encryption
from assay.canaries import Canary
from assay.crypto import (
    OpenResult,
    diagnose,
    key_forms,
    open_value,
    search_forms,
    tamper,
)
from assay.encryption import Column, FlowResult, StoredCanary, StoredValue, analyse

KEY = bytes(range(32))
TOKEN = b"gho_canary_token_0123456789"


def sealed(nonce_size: int = 12) -> tuple[bytes, bytes, bytes]:
    nonce = os.urandom(nonce_size)
    box = AESGCM(KEY).encrypt(nonce, TOKEN, None)
    return nonce, box[:-16], box[-16:]


def envelopes() -> dict[str, object]:
    nonce, body, tag = sealed()
    blob = nonce + body + tag
    b64 = lambda data: base64.b64encode(data).decode()  # noqa: E731
    return {
        "prefixed base64": "v1:" + b64(blob),
        "hex": blob.hex(),
        "upper hex": blob.hex().upper(),
        "base64url unpadded": base64.urlsafe_b64encode(blob).decode().rstrip("="),
        "nonce tag ciphertext": b64(nonce + tag + body),
        "ciphertext tag nonce": b64(body + tag + nonce),
        "hex parts": f"{nonce.hex()}:{body.hex()}:{tag.hex()}",
        "two prefixes and parts": f"enc:v2:{b64(nonce)}.{b64(body + tag)}",
        "json": json.dumps(
            {"iv": b64(nonce), "ciphertext": b64(body), "tag": b64(tag)}
        ),
        "json without tag": json.dumps(
            {"nonce": nonce.hex(), "data": (body + tag).hex()}
        ),
        "bytea": blob,
        "bytea text": ("v1:" + b64(blob)).encode(),
    }


@pytest.mark.parametrize("name", list(envelopes()))
def test_envelope_decrypts(name):
    result = open_value(envelopes()[name], KEY)
    assert result.status == "decrypted"
    assert result.opened.plaintext == TOKEN
    assert len(result.opened.nonce) == 12


@pytest.mark.parametrize("name", list(envelopes()))
def test_tampered_envelope_fails(name):
    value = envelopes()[name]
    result = open_value(value, KEY)
    changed = tamper(value, result.opened)
    assert type(changed) is type(value)
    assert changed != value
    assert open_value(changed, KEY).status == "undecryptable"


def test_wrong_key_undecryptable():
    value = envelopes()["prefixed base64"]
    result = open_value(value, bytes(32))
    assert result.status == "undecryptable"
    assert result.tried > 0


def test_long_nonce_reported():
    nonce, body, tag = sealed(16)
    result = open_value(base64.b64encode(nonce + body + tag).decode(), KEY)
    assert result.status == "decrypted"
    assert len(result.opened.nonce) == 16


def test_diagnose_plaintext():
    reason = diagnose(TOKEN.decode(), KEY, [TOKEN.decode()])
    assert reason == "it is the plaintext token itself"


def test_diagnose_base64_only():
    reason = diagnose(base64.b64encode(TOKEN).decode(), KEY, [TOKEN.decode()])
    assert "base64" in reason


def test_diagnose_aes128():
    nonce = os.urandom(12)
    value = base64.b64encode(nonce + AESGCM(KEY[:16]).encrypt(nonce, TOKEN, None))
    reason = diagnose(value.decode(), KEY, [TOKEN.decode()])
    assert "AES-128-GCM with the first 16 bytes" in reason


def test_diagnose_cbc():
    iv = os.urandom(16)
    padder = padding.PKCS7(128).padder()
    data = padder.update(TOKEN) + padder.finalize()
    encryptor = Cipher(algorithms.AES(KEY), modes.CBC(iv)).encryptor()
    value = (
        "v1:"
        + base64.b64encode(iv + encryptor.update(data) + encryptor.finalize()).decode()
    )
    assert "AES-256-CBC" in diagnose(value, KEY, [TOKEN.decode()])


def test_diagnose_ctr():
    nonce = os.urandom(16)
    encryptor = Cipher(algorithms.AES(KEY), modes.CTR(nonce)).encryptor()
    value = base64.b64encode(nonce + encryptor.update(TOKEN) + encryptor.finalize())
    assert "AES-256-CTR" in diagnose(value.decode(), KEY, [TOKEN.decode()])


def test_key_forms_found_in_prints():
    forms = key_forms(KEY, base64.b64encode(KEY).decode())
    printed = f"loaded key {list(KEY)} and {KEY.hex()}".encode()
    found = search_forms(printed, forms)
    assert "key byte-list" in found
    assert "key hex" in found
    assert search_forms(b"nothing here", forms) == []


def flow_with(values: list[object]) -> FlowResult:
    canary = Canary(TOKEN.decode(), "token", "github access token of tenant A")
    flow = FlowResult()
    flow.canaries.append(StoredCanary(canary, "access token", "github", "A", "t-a"))
    flow.attempts.append(
        {"provider": "github", "tenant": "A", "ok": True, "outcome": "stored"}
    )
    column = Column("public", "integrations", "access_token")
    flow.values = [
        StoredValue(column, value, '{"provider": "github"}') for value in values
    ]
    return flow


def test_analyse_passes_sealed_token():
    findings, observed = analyse(
        "TE-1", flow_with([envelopes()["hex"]]), KEY, what="token"
    )
    assert findings == []
    assert observed["decrypted"] == 1
    assert observed["nonce_bits"] == [96]


def test_analyse_flags_nonce_reuse():
    nonce = b"\0" * 12
    box = AESGCM(KEY).encrypt(nonce, TOKEN, None)
    value = (nonce + box).hex()
    findings, _ = analyse("TE-1", flow_with([value, value]), KEY, what="token")
    assert [f.rule for f in findings] == ["nonce-reuse"]


def test_analyse_flags_plaintext():
    findings, _ = analyse("TE-1", flow_with([TOKEN.decode()]), KEY, what="token")
    rules = [f.rule for f in findings]
    assert "not-aes-256-gcm" in rules
    assert "canary-not-encrypted" in rules
    assert all(TOKEN.decode() not in f.message for f in findings)


def test_analyse_without_stored_canary_is_undecided():
    flow = flow_with([])
    flow.attempts[0].update(ok=False, outcome="GET /x returned 404")
    findings, _ = analyse("TE-1", flow, KEY, what="token")
    assert [(f.rule, f.level) for f in findings] == [("no-canary-stored", "undecided")]
    assert "GET /x returned 404" in findings[0].message


def test_analyse_ambiguous_is_undecided(monkeypatch):
    opened = open_value(envelopes()["hex"], KEY).opened
    ambiguous = OpenResult("ambiguous", opened, [opened, opened], 2)
    monkeypatch.setattr(encryption, "open_value", lambda value, key: ambiguous)
    findings, _ = analyse("TE-1", flow_with(["x"]), KEY, what="token")
    levels = {f.rule: f.level for f in findings}
    assert levels["ambiguous-envelope"] == "undecided"


def test_tamper_skips_version_prefix():
    # AES-CTR output has no tag, so only the change itself can be checked.
    value = "v1:" + base64.b64encode(os.urandom(40)).decode()
    changed = tamper(value)
    assert changed.startswith("v1:")
    assert changed != value
