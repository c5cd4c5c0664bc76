"""Independent AES-256-GCM decryption of stored values, with envelope detection.

An application stores a token as some envelope around ``nonce``,
``ciphertext`` and ``tag``. ``open_value`` finds the envelope without being
given its format: an optional text prefix (``v1:``, ``enc:v2:``), the payload
in hex, base64 (padded or not) or base64url, or raw bytes (bytea), or the
parts separated by ``:``, ``.``, ``$`` or ``|``, or a JSON object with
named fields. Inside one blob it tries nonce|ciphertext|tag,
nonce|tag|ciphertext and ciphertext|tag|nonce, with 96-bit nonces first and
64- and 128-bit nonces too, so a wrong nonce size is reported, not missed.
GCM's tag makes a wrong guess fail authentication, so a success is
conclusive. Two different successes for one value are ambiguous and
reported as such, never resolved by a guess.

When nothing authenticates, ``diagnose`` says what the value looks like
instead: the plaintext, an encoding of it, AES-128-GCM under half the key,
AES-256-CBC or AES-256-CTR.

NOTE: associated data is not supported, so a value sealed with AAD (a row
id, say) reads as undecryptable.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import re
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from assay.canaries import encodings

__all__ = [
    "Candidate",
    "Opened",
    "OpenResult",
    "candidates",
    "diagnose",
    "key_forms",
    "open_value",
    "plaintext_forms",
    "search_forms",
    "tamper",
]

TAG_BYTES = 16
NONCE_SIZES = (12, 16, 8)
SEPARATORS = ":.$|"
MAX_PREFIX = 24
NONCE_FIELDS = ("nonce", "iv")
CIPHERTEXT_FIELDS = ("ciphertext", "ct", "data", "value", "encrypted", "content")
TAG_FIELDS = ("tag", "authtag", "auth_tag", "mac")

Value = str | bytes


@dataclass(frozen=True)
class Candidate:
    """One reading of a stored value as byte strings, and how to write it back.

    `parts` are the byte strings in the order they appear in the value.
    `rebuild` turns parts of the same lengths back into a value of the same
    format, which is how a tampered copy is made.
    """

    description: str
    parts: tuple[bytes, ...]
    rebuild: Callable[[tuple[bytes, ...]], Value] = field(compare=False, repr=False)
    roles: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Opened:
    """A successful decryption: the plaintext, the nonce and the envelope read."""

    plaintext: bytes
    nonce: bytes
    envelope: str
    candidate: Candidate = field(repr=False)
    # Part index and byte offset of the first ciphertext byte, for tampering.
    ciphertext_at: tuple[int, int] = (0, 0)


@dataclass
class OpenResult:
    """The outcome of reading one stored value."""

    status: str  # decrypted, undecryptable or ambiguous
    opened: Opened | None = None
    alternatives: list[Opened] = field(default_factory=list)
    tried: int = 0

    @property
    def decrypted(self) -> bool:
        return self.status == "decrypted"


# Decoding ------------------------------------------------------------------------

_HEX = re.compile(r"(?:[0-9a-fA-F]{2})+")
_B64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
_B64URL = re.compile(r"[A-Za-z0-9_-]+={0,2}")


def _decoders(text: str) -> list[tuple[str, bytes, Callable[[bytes], str]]]:
    """Return (name, bytes, encode) for every encoding `text` is valid in."""
    found: list[tuple[str, bytes, Callable[[bytes], str]]] = []
    if _HEX.fullmatch(text):
        upper = text.isupper()
        found.append(
            (
                "hex",
                bytes.fromhex(text),
                lambda b: b.hex().upper() if upper else b.hex(),
            )
        )
    padded = "=" in text
    pad = "=" * (-len(text.rstrip("=")) % 4)
    if _B64.fullmatch(text) and len(text.rstrip("=")) % 4 != 1:
        try:
            data = base64.b64decode(text.rstrip("=") + pad, validate=True)
        except (binascii.Error, ValueError):
            data = None
        if data is not None:
            found.append(("base64", data, _b64_encoder(base64.b64encode, padded)))
    if (
        _B64URL.fullmatch(text)
        and re.search(r"[-_]", text)
        and len(text.rstrip("=")) % 4 != 1
    ):
        try:
            data = base64.urlsafe_b64decode(text.rstrip("=") + pad)
        except (binascii.Error, ValueError):
            data = None
        if data is not None:
            found.append(
                ("base64url", data, _b64_encoder(base64.urlsafe_b64encode, padded))
            )
    return found


def _b64_encoder(
    encode: Callable[[bytes], bytes], padded: bool
) -> Callable[[bytes], str]:
    def encoder(data: bytes) -> str:
        text = encode(data).decode("ascii")
        return text if padded else text.rstrip("=")

    return encoder


def _prefixes(text: str) -> list[tuple[str, str]]:
    """Split off version prefixes: ("", text), ("v1:", rest), ("enc:v1:", rest) ..."""
    splits = [("", text)]
    for index, char in enumerate(text[:MAX_PREFIX]):
        if char in SEPARATORS and index > 0:
            prefix = text[: index + 1]
            if re.fullmatch(r"[A-Za-z0-9_\-]+(?:[:.$|][A-Za-z0-9_\-]+)*[:.$|]", prefix):
                splits.append((prefix, text[index + 1 :]))
    return splits


def candidates(value: Value | memoryview) -> list[Candidate]:
    """Return every plausible reading of `value` as envelope parts."""
    if isinstance(value, memoryview):
        value = value.tobytes()
    if isinstance(value, bytes):
        found = [Candidate("raw bytes", (value,), lambda parts: parts[0])]
        try:
            text = value.decode("ascii")
        except UnicodeDecodeError:
            return found
        # A bytea column may hold the envelope's text form.
        return found + [
            Candidate(
                c.description + " (as bytes)",
                c.parts,
                lambda parts, c=c: _to_bytes(c.rebuild(parts)),
                c.roles,
            )
            for c in _text_candidates(text)
        ]
    return _text_candidates(value.strip())


def _to_bytes(value: Value) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def _text_candidates(text: str) -> list[Candidate]:
    found: list[Candidate] = []
    if text.startswith("{"):
        found.extend(_json_candidates(text))
    for prefix, payload in _prefixes(text):
        shown = f"prefix {prefix!r}, " if prefix else ""
        for name, data, encode in _decoders(payload):
            found.append(
                Candidate(
                    f"{shown}{name}",
                    (data,),
                    lambda parts, p=prefix, e=encode: p + e(parts[0]),
                )
            )
        for separator in SEPARATORS:
            pieces = payload.split(separator)
            if 2 <= len(pieces) <= 3 and all(pieces):
                found.extend(_split_candidates(prefix, separator, pieces))
    return found


def _split_candidates(
    prefix: str, separator: str, pieces: list[str]
) -> list[Candidate]:
    """Parts written separately, each in the same encoding."""
    found = []
    names = {name for piece in pieces for name, _, _ in _decoders(piece)}
    for name in sorted(names):
        decoded = []
        for piece in pieces:
            match = [(data, enc) for n, data, enc in _decoders(piece) if n == name]
            if not match:
                break
            decoded.append(match[0])
        if len(decoded) != len(pieces):
            continue
        encoders = [enc for _, enc in decoded]
        originals = [data for data, _ in decoded]

        def rebuild(
            parts, p=prefix, s=separator, encs=encoders, old=originals, text=pieces
        ):
            # Unchanged parts keep their text: a non-canonical encoding (a two-letter
            # version tag read as base64) would not survive decoding and encoding.
            return p + s.join(
                piece if part == before else enc(part)
                for enc, part, before, piece in zip(encs, parts, old, text)
            )

        shown = f"prefix {prefix!r}, " if prefix else ""
        found.append(
            Candidate(
                f"{shown}{len(pieces)} {name} parts separated by {separator!r}",
                tuple(data for data, _ in decoded),
                rebuild,
            )
        )
    return found


def _json_candidates(text: str) -> list[Candidate]:
    try:
        document = json.loads(text)
    except ValueError:
        return []
    if not isinstance(document, dict):
        return []
    lowered = {key.lower(): key for key in document}

    def pick(names: Sequence[str]) -> str | None:
        return next((lowered[n] for n in names if n in lowered), None)

    keys = [pick(NONCE_FIELDS), pick(CIPHERTEXT_FIELDS), pick(TAG_FIELDS)]
    if keys[0] is None or keys[1] is None:
        return []
    present = [key for key in keys if key is not None]
    roles = ("nonce", "ciphertext", "tag") if keys[2] else ("nonce", "ciphertext+tag")
    values = [document[key] for key in present]
    if not all(isinstance(v, str) for v in values):
        return []
    found = []
    for name in ("hex", "base64", "base64url"):
        decoded = []
        for text_value in values:
            match = [(d, e) for n, d, e in _decoders(text_value) if n == name]
            if not match:
                break
            decoded.append(match[0])
        if len(decoded) != len(values):
            continue

        def rebuild(parts, doc=document, fields=present, decoded=decoded):
            copy = dict(doc)
            for key, (before, enc), part in zip(fields, decoded, parts):
                if part != before:
                    copy[key] = enc(part)
            return json.dumps(copy)

        found.append(
            Candidate(
                f"JSON fields {', '.join(present)} in {name}",
                tuple(d for d, _ in decoded),
                rebuild,
                roles,
            )
        )
    return found


# Layouts -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Layout:
    name: str
    nonce: bytes
    ciphertext: bytes
    tag: bytes
    ciphertext_at: tuple[int, int]


def _layouts(candidate: Candidate) -> Iterable[_Layout]:
    parts = candidate.parts
    if candidate.roles is not None:
        nonce = parts[0]
        if candidate.roles[1] == "ciphertext+tag":
            body = parts[1]
            if len(body) > TAG_BYTES:
                yield _Layout(
                    "nonce, ciphertext|tag",
                    nonce,
                    body[:-TAG_BYTES],
                    body[-TAG_BYTES:],
                    (1, 0),
                )
        else:
            yield _Layout("nonce, ciphertext, tag", nonce, parts[1], parts[2], (1, 0))
        return

    if len(parts) == 1:
        blob = parts[0]
        for size in NONCE_SIZES:
            body = len(blob) - size - TAG_BYTES
            if body < 1:
                continue
            yield _Layout(
                "nonce|ciphertext|tag",
                blob[:size],
                blob[size : size + body],
                blob[size + body :],
                (0, size),
            )
            yield _Layout(
                "nonce|tag|ciphertext",
                blob[:size],
                blob[size + TAG_BYTES :],
                blob[size : size + TAG_BYTES],
                (0, size + TAG_BYTES),
            )
            yield _Layout(
                "ciphertext|tag|nonce",
                blob[-size:],
                blob[:body],
                blob[body : body + TAG_BYTES],
                (0, 0),
            )
        return

    # Separate parts: every assignment of nonce, ciphertext and tag to them.
    if len(parts) == 3:
        for order in itertools.permutations(range(3)):
            nonce, body, tag = (parts[i] for i in order)
            if len(tag) == TAG_BYTES and len(nonce) in NONCE_SIZES and body:
                roles = "|".join(
                    ("nonce", "ciphertext", "tag")[order.index(i)] for i in range(3)
                )
                yield _Layout(roles, nonce, body, tag, (order[1], 0))
    elif len(parts) == 2:
        for nonce_index in (0, 1):
            nonce, body = parts[nonce_index], parts[1 - nonce_index]
            if len(nonce) in NONCE_SIZES and len(body) > TAG_BYTES:
                yield _Layout(
                    "nonce, ciphertext|tag"
                    if nonce_index == 0
                    else "ciphertext|tag, nonce",
                    nonce,
                    body[:-TAG_BYTES],
                    body[-TAG_BYTES:],
                    (1 - nonce_index, 0),
                )


def open_value(value: Value | memoryview, key: bytes) -> OpenResult:
    """Decrypt a stored value under AES-GCM with `key`, detecting its envelope."""
    aead = AESGCM(key)
    successes: dict[tuple[bytes, bytes], Opened] = {}
    tried = 0
    for candidate in candidates(value):
        for layout in _layouts(candidate):
            tried += 1
            try:
                plaintext = aead.decrypt(
                    layout.nonce, layout.ciphertext + layout.tag, None
                )
            except (InvalidTag, ValueError):
                continue
            opened = Opened(
                plaintext=plaintext,
                nonce=layout.nonce,
                envelope=f"{candidate.description}, {layout.name}",
                candidate=candidate,
                ciphertext_at=layout.ciphertext_at,
            )
            successes.setdefault((plaintext, layout.nonce), opened)
    if not successes:
        return OpenResult("undecryptable", tried=tried)
    found = list(successes.values())
    if len(found) > 1:
        return OpenResult("ambiguous", found[0], found, tried)
    return OpenResult("decrypted", found[0], found, tried)


def tamper(value: Value | memoryview, opened: Opened | None = None) -> Value:
    """Return `value` with one ciphertext byte changed, in the same envelope format.

    Without a successful decryption the middle byte of the longest decoded
    part is changed, or, when nothing decodes, the middle character of the text.
    """
    if isinstance(value, memoryview):
        value = value.tobytes()
    if opened is not None:
        index, offset = opened.ciphertext_at
        return _flip(opened.candidate, index, offset)
    readings = candidates(value)
    if readings:
        # The reading with the longest decoded part is most likely the payload,
        # not a version prefix that happens to decode.
        reading = max(readings, key=lambda r: max(len(p) for p in r.parts))
        index = max(range(len(reading.parts)), key=lambda i: len(reading.parts[i]))
        return _flip(reading, index, len(reading.parts[index]) // 2)
    if isinstance(value, bytes):
        middle = len(value) // 2
        return value[:middle] + bytes([value[middle] ^ 0x01]) + value[middle + 1 :]
    middle = len(value) // 2
    replacement = "B" if value[middle] != "B" else "C"
    return value[:middle] + replacement + value[middle + 1 :]


def _flip(candidate: Candidate, index: int, offset: int) -> Value:
    parts = list(candidate.parts)
    part = bytearray(parts[index])
    offset = min(offset, len(part) - 1)
    part[offset] ^= 0x01
    parts[index] = bytes(part)
    return candidate.rebuild(tuple(parts))


# Diagnosis -------------------------------------------------------------------------


def _unpad(data: bytes) -> bytes | None:
    unpadder = padding.PKCS7(128).unpadder()
    try:
        return unpadder.update(data) + unpadder.finalize()
    except ValueError:
        return None


def _aes(key: bytes, mode: modes.Mode, data: bytes) -> bytes:
    decryptor = Cipher(algorithms.AES(key), mode).decryptor()
    return decryptor.update(data) + decryptor.finalize()


def diagnose(value: Value | memoryview, key: bytes, expected: Iterable[str]) -> str:
    """Say what an undecryptable value is, as far as the expected plaintexts show."""
    if isinstance(value, memoryview):
        value = value.tobytes()
    raw = value if isinstance(value, bytes) else value.encode()
    wanted = [e.encode() for e in expected]
    for plain in wanted:
        if raw.strip() == plain:
            return "it is the plaintext token itself"
    for plain in wanted:
        for name, form in plaintext_forms(plain).items():
            if form in raw:
                return f"it contains the plaintext token ({name} encoded)"
    readings = candidates(value)
    for reading in readings:
        for data in reading.parts:
            if data.strip() in wanted:
                return f"it is the plaintext token, only {reading.description} encoded"
    for reading in readings:
        found = _other_cipher(reading.parts, key, wanted)
        if found:
            return f"it decrypts under {found}, not AES-256-GCM"
    return "no envelope read as nonce, ciphertext and tag authenticates under the key"


def _other_cipher(
    parts: tuple[bytes, ...], key: bytes, wanted: list[bytes]
) -> str | None:
    blob = b"".join(parts)
    for half, name in ((key[:16], "first"), (key[16:], "last")):
        aead = AESGCM(half)
        for size in NONCE_SIZES:
            if len(blob) <= size + TAG_BYTES:
                continue
            try:
                if aead.decrypt(blob[:size], blob[size:], None) in wanted:
                    return f"AES-128-GCM with the {name} 16 bytes of the key"
            except (InvalidTag, ValueError):
                continue
    if len(blob) >= 32 and (len(blob) - 16) % 16 == 0:
        plain = _unpad(_aes(key, modes.CBC(blob[:16]), blob[16:]))
        if plain is not None and plain in wanted:
            return "AES-256-CBC, which has no authentication tag"
    for size in (16, 12):
        if len(blob) <= size:
            continue
        counter = blob[:size] + b"\0" * (16 - size)
        if size == 12:
            counter = blob[:12] + b"\0\0\0\2"
        if _aes(key, modes.CTR(counter), blob[size:]) in wanted:
            return "AES-256-CTR, which has no authentication tag"
    return None


# Forms to search for -------------------------------------------------------------


def plaintext_forms(value: str | bytes) -> dict[str, bytes]:
    """Return the forms a token can take in a row or a response (see canaries)."""
    return encodings(value)


def key_forms(raw: bytes, encoded: str | None = None) -> dict[str, bytes]:
    """Return the forms a leaked key can take, including byte-array prints."""
    forms = {f"key {name}": form for name, form in encodings(raw).items()}
    if encoded is not None:
        forms.update(
            {
                f"key as configured, {name}": form
                for name, form in encodings(encoded).items()
            }
        )
    forms["key signed byte list"] = str(
        [b - 256 if b > 127 else b for b in raw]
    ).encode()
    forms["key hex with spaces"] = " ".join(f"{b:02x}" for b in raw).encode()
    forms["key hex with colons"] = ":".join(f"{b:02x}" for b in raw).encode()
    return forms


def search_forms(data: bytes, forms: dict[str, bytes]) -> list[str]:
    """Return the names of the forms found in `data`."""
    return [name for name, form in forms.items() if form and form in data]
