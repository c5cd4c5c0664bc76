"""The signed manifest of an evidence folder, and its verification.

``manifest.json`` lists the SHA-256 and size of every other file in the
folder and carries an Ed25519 signature over its own canonical JSON. The
private key comes from an environment variable (PEM, or the base64 of the
32-byte seed) or from a key file named in assay.yaml, never from the evidence
folder. With no key configured, the run signs with a throwaway key: the
folder then contains only that key's public half, and the manifest and every
report state that the signature is self-made, because anyone who can edit the folder
could re-sign it the same way.

Verification fails on any changed, added or missing byte, including a
re-formatted manifest.json, because the manifest must re-serialise to the
exact bytes on disk.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from assay.config import Config
from assay.errors import ConfigError, EvidenceError, UsageError

__all__ = [
    "MANIFEST_FILE",
    "PUBLIC_KEY_FILE",
    "Signer",
    "Verification",
    "fingerprint",
    "load_public_key",
    "load_signer",
    "sign_folder",
    "sign_run_folder",
    "signer_for_run",
    "verify_folder",
]

logger = logging.getLogger(__name__)

MANIFEST_FILE = "manifest.json"
PUBLIC_KEY_FILE = "public-key.pem"
SCHEMA = "assay-manifest/1"
ALGORITHM = "Ed25519"
CHUNK = 1 << 20


def fingerprint(public_key: Ed25519PublicKey) -> str:
    """Return the SHA-256 (hex) of the raw 32-byte public key."""
    raw = public_key.public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return hashlib.sha256(raw).hexdigest()


def _public_pem(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@dataclass(frozen=True)
class Signer:
    """An Ed25519 private key and where it came from."""

    private_key: Ed25519PrivateKey
    self_made: bool
    source: str

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.private_key.public_key())

    def describe(self) -> dict[str, Any]:
        """Return the signature facts that evidence.json and the reports show."""
        return {
            "algorithm": ALGORITHM,
            "self_made": self.self_made,
            "key_source": self.source,
            "public_key_sha256": self.fingerprint,
        }


def _parse_private_key(data: bytes, where: str, fix: str) -> Ed25519PrivateKey:
    text = data.strip()
    try:
        if text.startswith(b"-----BEGIN"):
            key = serialization.load_pem_private_key(text, password=None)
        else:
            seed = base64.b64decode(text, validate=True)
            key = Ed25519PrivateKey.from_private_bytes(seed)
    except (ValueError, TypeError, binascii.Error) as exc:
        raise ConfigError(
            f"{where} is not an unencrypted Ed25519 private key ({exc})", fix=fix
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(
            f"{where} contains a {type(key).__name__}, not an Ed25519 key", fix=fix
        )
    return key


KEY_FIX = (
    "Create one with `openssl genpkey -algorithm ed25519 -out signing.pem` "
    "and give its PEM text, or the base64 of its 32-byte seed"
)


def load_signer(
    config: Config | None,
    *,
    environ: Mapping[str, str] = os.environ,
    report_dir: Path | None = None,
) -> Signer:
    """Return the configured signing key, or a throwaway one when none is set.

    The environment variable named by ``evidence.signing_key_env`` wins over
    ``evidence.signing_key_file``. A key file inside `report_dir` is rejected,
    because a key kept beside the evidence proves nothing.
    """
    evidence = config.evidence if config is not None else None
    env_name = evidence.signing_key_env if evidence else "ASSAY_SIGNING_KEY"
    value = environ.get(env_name, "")
    if value.strip():
        where = f"environment variable {env_name}"
        key = _parse_private_key(value.encode(), where, KEY_FIX)
        return Signer(key, self_made=False, source=where)

    key_file = getattr(evidence, "signing_key_file", None) if evidence else None
    if key_file:
        return _signer_from_file(config, key_file, report_dir)

    return Signer(
        Ed25519PrivateKey.generate(),
        self_made=True,
        source=f"throwaway key (no {env_name} and no evidence.signing_key_file)",
    )


def _signer_from_file(config: Config, key_file: str, report_dir: Path | None) -> Signer:
    path = config.path(key_file)
    keys = ("evidence", "signing_key_file")
    evidence_roots = [config.path(config.evidence.report_dir)]
    if report_dir is not None:
        evidence_roots.append(report_dir.resolve())
    if any(path.is_relative_to(root) for root in evidence_roots):
        raise config.error(
            keys,
            key_file,
            "the signing key is inside the evidence folder",
            "Keep the private key outside reports/, e.g. in a CI secret",
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise config.error(
            keys, key_file, f"cannot read the signing key ({exc.strerror})", KEY_FIX
        ) from None
    file, line = config.where(*keys)
    try:
        key = _parse_private_key(data, str(path), KEY_FIX)
    except ConfigError as exc:
        raise ConfigError(
            exc.reason, file=file, line=line, key=".".join(keys), value=key_file,
            fix=KEY_FIX,
        ) from None
    return Signer(key, self_made=False, source=f"key file {key_file}")


def load_public_key(path: Path) -> Ed25519PublicKey:
    """Read a PEM Ed25519 public key, or raise UsageError naming the file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(
            f"{path}: cannot read the public key ({exc.strerror}); pass the PEM "
            "file printed by `openssl pkey -in signing.pem -pubout`"
        ) from None
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError):
        raise UsageError(
            f"{path}: not a PEM public key; pass the output of "
            "`openssl pkey -in signing.pem -pubout`"
        ) from None
    if not isinstance(key, Ed25519PublicKey):
        raise UsageError(
            f"{path}: a {type(key).__name__}, not an Ed25519 public key; evidence "
            "is signed with Ed25519"
        )
    return key


# Signing ---------------------------------------------------------------------


def _file_digest(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _folder_files(folder: Path) -> list[Path]:
    """List every entry below `folder` except the manifest, by relative path."""
    entries = [
        path
        for path in folder.rglob("*")
        if not path.is_dir() or path.is_symlink()
    ]
    entries = [p for p in entries if p.relative_to(folder).as_posix() != MANIFEST_FILE]
    return sorted(entries, key=lambda p: p.relative_to(folder).as_posix())


def _signed_payload(manifest: dict[str, Any]) -> bytes:
    unsigned = {k: v for k, v in manifest.items() if k != "signature"}
    return json.dumps(unsigned, sort_keys=True, separators=(",", ":")).encode()


def _serialise(manifest: dict[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()


def sign_folder(folder: Path, signer: Signer) -> Path:
    """Write the public key and a signed manifest.json covering every file."""
    public_key = signer.private_key.public_key()
    (folder / PUBLIC_KEY_FILE).write_bytes(_public_pem(public_key))

    files = []
    for path in _folder_files(folder):
        if path.is_symlink():
            raise EvidenceError(
                f"{path}: a symbolic link in the evidence folder; evidence must "
                "be plain files"
            )
        digest, size = _file_digest(path)
        files.append(
            {"path": path.relative_to(folder).as_posix(), "sha256": digest, "size": size}
        )
    manifest: dict[str, Any] = {
        "schema": SCHEMA,
        "algorithm": ALGORITHM,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "self_made": signer.self_made,
        "key_source": signer.source,
        "public_key": PUBLIC_KEY_FILE,
        "public_key_sha256": signer.fingerprint,
        "files": files,
    }
    signature = signer.private_key.sign(_signed_payload(manifest))
    manifest["signature"] = base64.b64encode(signature).decode()

    target = folder / MANIFEST_FILE
    target.write_bytes(_serialise(manifest))
    logger.info(
        "signed %d files in %s with key %s%s",
        len(files),
        folder,
        signer.fingerprint[:16],
        " (self-made)" if signer.self_made else "",
    )
    return target


# Verification ----------------------------------------------------------------


@dataclass(frozen=True)
class Verification:
    """The outcome of `verify_folder`: files checked, key used and warnings."""

    folder: Path
    files: int
    key_fingerprint: str
    key_origin: str
    self_made: bool
    warnings: tuple[str, ...] = ()


def _read_manifest(folder: Path) -> tuple[dict[str, Any], bytes]:
    path = folder / MANIFEST_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise EvidenceError(
            f"{folder}: {MANIFEST_FILE} is missing, so nothing proves the files "
            "were not edited; verify only folders written by `assay run` or "
            "`assay merge`"
        ) from None
    try:
        manifest = json.loads(data)
    except ValueError as exc:
        raise EvidenceError(
            f"{path}: not valid JSON ({exc}); the manifest was truncated or edited"
        ) from None
    if not isinstance(manifest, dict) or manifest.get("schema") != SCHEMA:
        raise EvidenceError(
            f"{path}: not an Assay manifest (schema {SCHEMA!r} expected)"
        )
    return manifest, data


def _check_signature(
    manifest: dict[str, Any], key: Ed25519PublicKey, key_origin: str, path: Path
) -> None:
    try:
        signature = base64.b64decode(manifest.get("signature") or "", validate=True)
        key.verify(signature, _signed_payload(manifest))
    except (InvalidSignature, binascii.Error, ValueError):
        raise EvidenceError(
            f"{path}: the signature does not verify with {key_origin} "
            f"(key sha256 {fingerprint(key)[:16]}, manifest names "
            f"{str(manifest.get('public_key_sha256'))[:16]}); the manifest was "
            "edited or signed with another key"
        ) from None


def _compare_files(folder: Path, manifest: dict[str, Any]) -> list[str]:
    listed = {item["path"]: item for item in manifest.get("files", [])}
    present = {p.relative_to(folder).as_posix(): p for p in _folder_files(folder)}
    problems = []
    for name in sorted(set(listed) | set(present)):
        if name not in present:
            problems.append(f"missing: {name}")
            continue
        if name not in listed:
            problems.append(f"added: {name}")
            continue
        path = present[name]
        if path.is_symlink():
            problems.append(f"changed: {name} (now a symbolic link)")
            continue
        digest, size = _file_digest(path)
        if digest != listed[name]["sha256"]:
            problems.append(
                f"changed: {name} ({size} bytes, signed with {listed[name]['size']}; "
                f"sha256 {digest[:16]}, signed {listed[name]['sha256'][:16]})"
            )
    return problems


def verify_folder(
    folder: Path, public_key: Path | None = None, *, key_origin: str = ""
) -> Verification:
    """Check the manifest's signature and every file's bytes.

    Without `public_key` the key inside the folder is used, and the result
    carries a warning, because that only shows the files match each other.
    Raises UsageError for a missing folder or unreadable key (exit 2) and
    EvidenceError for any mismatch (exit 1).
    """
    if not folder.is_dir():
        raise UsageError(
            f"{folder}: no such evidence folder; pass a folder written by `assay run`"
        )
    manifest, raw = _read_manifest(folder)
    path = folder / MANIFEST_FILE
    warnings: list[str] = []

    if public_key is not None:
        key = load_public_key(public_key)
        origin = key_origin or f"public key {public_key}"
    else:
        key = load_public_key(folder / PUBLIC_KEY_FILE)
        origin = f"the public key inside the folder ({PUBLIC_KEY_FILE})"
        warnings.append(
            "verified with the public key stored in the evidence folder, so this "
            "only shows the files match each other: whoever can edit the folder "
            "can re-sign it. Pass --public-key or set evidence.public_key in "
            "assay.yaml"
        )
    if manifest.get("self_made"):
        warnings.append(
            "the signature is self-made: the run had no signing key configured "
            "and signed with a throwaway key"
        )

    problems = []
    try:
        _check_signature(manifest, key, origin, path)
    except EvidenceError as exc:
        problems.append(str(exc))
    if raw != _serialise(manifest):
        problems.append(
            f"changed: {MANIFEST_FILE} (its bytes differ from the signed content)"
        )
    problems += _compare_files(folder, manifest)
    if problems:
        raise EvidenceError(
            f"{folder}: evidence does not match its signed manifest:\n  "
            + "\n  ".join(problems)
        )
    return Verification(
        folder=folder,
        files=len(manifest.get("files", [])),
        key_fingerprint=fingerprint(key),
        key_origin=origin,
        self_made=bool(manifest.get("self_made")),
        warnings=tuple(warnings),
    )


# The run plugin ---------------------------------------------------------------


def signer_for_run(
    config: Config, report_dir: Path, run_info: dict[str, Any], usage_errors: list[str]
) -> Signer | None:
    """Load the run's signer before evidence is written, so reports can name it.

    A bad key becomes a usage error of the run (exit 2) and leaves the folder
    unsigned; the signature facts go into ``run_info`` for evidence.json.
    """
    try:
        signer = load_signer(config, report_dir=report_dir)
        _check_configured_public_key(config, signer)
    except (ConfigError, UsageError) as exc:
        usage_errors.append(str(exc))
        return None
    run_info["signature"] = signer.describe()
    return signer


def _check_configured_public_key(config: Config, signer: Signer) -> None:
    if not config.evidence.public_key:
        return
    if signer.self_made:
        logger.warning(
            "evidence.public_key is set but no signing key is configured, so this "
            "run signs with a throwaway key that will not verify against it"
        )
        return
    expected = load_public_key(config.path(config.evidence.public_key))
    if fingerprint(expected) != signer.fingerprint:
        raise config.error(
            ("evidence", "public_key"),
            config.evidence.public_key,
            f"does not match the signing key from {signer.source}",
            "Point public_key at the public half of the signing key",
        )


def sign_run_folder(report_dir: Path, signer: Signer | None) -> None:
    """Sign the finished evidence folder, logging an OSError or EvidenceError."""
    if signer is None:
        logger.error("%s is left unsigned because the signing key is invalid", report_dir)
        return
    try:
        sign_folder(report_dir, signer)
    except (OSError, EvidenceError) as exc:
        logger.error("could not sign %s: %s", report_dir, exc)
