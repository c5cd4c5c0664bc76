"""Signed manifest: every changed, added or missing byte fails verification."""

from __future__ import annotations

import base64
import json
import textwrap
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from assay.config import load_config
from assay.errors import ConfigError, EvidenceError, UsageError
from assay.manifest import (
    MANIFEST_FILE,
    PUBLIC_KEY_FILE,
    load_signer,
    sign_folder,
    verify_folder,
)
from fakes.evidence import evidence_document, write_folder


def private_pem(key: Ed25519PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def public_pem_file(key: Ed25519PrivateKey, path: Path) -> Path:
    path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def signed(tmp_path, key) -> Path:
    signer = load_signer(None, environ={"ASSAY_SIGNING_KEY": private_pem(key)})
    return write_folder(tmp_path / "run", evidence_document(), signer)


@pytest.fixture
def public_key(tmp_path, key) -> Path:
    return public_pem_file(key, tmp_path / "signing.pub.pem")


def test_manifest_lists_every_file(signed):
    manifest = json.loads((signed / MANIFEST_FILE).read_text())
    listed = [item["path"] for item in manifest["files"]]

    assert listed == [
        "evidence.json",
        "junit.xml",
        "oscal-assessment-results.json",
        PUBLIC_KEY_FILE,
        "report.html",
        "results.sarif",
    ]
    assert manifest["algorithm"] == "Ed25519"
    assert manifest["self_made"] is False


def test_verify_passes_with_signing_key(signed, public_key):
    result = verify_folder(signed, public_key)

    assert result.files == 6
    assert result.warnings == ()
    assert result.self_made is False


@pytest.mark.parametrize(
    "tamper, expected",
    [
        (lambda f: (f / "report.html").write_text("edited"), "changed: report.html"),
        (
            lambda f: (f / "evidence.json").write_bytes(
                (f / "evidence.json").read_bytes()[:-40]
            ),
            "changed: evidence.json",
        ),
        (
            lambda f: (f / "results.sarif").write_bytes(
                (f / "results.sarif").read_bytes() + b" "
            ),
            "changed: results.sarif",
        ),
        (lambda f: (f / "junit.xml").unlink(), "missing: junit.xml"),
        (lambda f: (f / "notes.txt").write_text("x"), "added: notes.txt"),
        (
            lambda f: (f / "sub").mkdir() or (f / "sub" / "a").write_text(""),
            "added: sub/a",
        ),
    ],
    ids=["changed", "truncated", "appended", "missing", "added", "added-nested"],
)
def test_verify_fails_on_tampered_file(signed, public_key, tamper, expected):
    tamper(signed)

    with pytest.raises(EvidenceError) as caught:
        verify_folder(signed, public_key)

    assert expected in str(caught.value)
    assert caught.value.exit_status == 1


def test_verify_fails_on_one_flipped_byte(signed, public_key):
    path = signed / "oscal-assessment-results.json"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))

    with pytest.raises(EvidenceError, match="changed: oscal-assessment-results.json"):
        verify_folder(signed, public_key)


def test_verify_fails_on_reformatted_manifest(signed, public_key):
    path = signed / MANIFEST_FILE
    path.write_text(json.dumps(json.loads(path.read_text())))

    with pytest.raises(EvidenceError, match="bytes differ from the signed content"):
        verify_folder(signed, public_key)


def test_verify_fails_on_edited_manifest_entry(signed, public_key):
    # Editing a file and its manifest line together breaks the signature.
    (signed / "report.html").write_text("edited")
    path = signed / MANIFEST_FILE
    manifest = json.loads(path.read_text())
    for item in manifest["files"]:
        if item["path"] == "report.html":
            item["sha256"] = "0" * 64
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")

    with pytest.raises(EvidenceError, match="signature does not verify"):
        verify_folder(signed, public_key)


def test_verify_fails_on_truncated_manifest(signed, public_key):
    path = signed / MANIFEST_FILE
    path.write_bytes(path.read_bytes()[:100])

    with pytest.raises(EvidenceError, match="not valid JSON"):
        verify_folder(signed, public_key)


def test_verify_fails_without_manifest(signed, public_key):
    (signed / MANIFEST_FILE).unlink()

    with pytest.raises(EvidenceError, match="manifest.json is missing"):
        verify_folder(signed, public_key)


def test_verify_fails_with_wrong_key(signed, tmp_path):
    other = public_pem_file(Ed25519PrivateKey.generate(), tmp_path / "other.pem")

    with pytest.raises(
        EvidenceError, match="signature does not verify with public key"
    ):
        verify_folder(signed, other)


def test_resigned_folder_fails_with_real_key(signed, public_key):
    # Whoever edits the folder can re-sign it with a key of their own; only
    # the configured public key tells the two apart.
    (signed / "report.html").write_text("edited")
    sign_folder(signed, load_signer(None, environ={}))

    assert verify_folder(signed).files == 6
    with pytest.raises(EvidenceError, match="signature does not verify"):
        verify_folder(signed, public_key)


def test_verify_with_folder_key_warns(signed):
    result = verify_folder(signed)

    assert len(result.warnings) == 1
    assert "public key stored in the evidence folder" in result.warnings[0]


def test_throwaway_key_is_self_made(tmp_path):
    folder = write_folder(tmp_path / "run", evidence_document())
    result = verify_folder(folder)
    evidence = json.loads((folder / "evidence.json").read_text())

    assert result.self_made is True
    assert any("signature is self-made" in w for w in result.warnings)
    assert evidence["run"]["signature"]["self_made"] is True
    assert "throwaway" in evidence["run"]["signature"]["key_source"]


def test_verify_missing_folder_is_usage_error(tmp_path):
    with pytest.raises(UsageError, match="no such evidence folder"):
        verify_folder(tmp_path / "absent")


def test_verify_bad_key_file_is_usage_error(signed, tmp_path):
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key\n")

    with pytest.raises(UsageError, match="not a PEM public key"):
        verify_folder(signed, bad)


def test_signer_reads_base64_seed(key):
    seed = key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    signer = load_signer(
        None, environ={"ASSAY_SIGNING_KEY": base64.b64encode(seed).decode()}
    )

    assert signer.self_made is False
    assert signer.source == "environment variable ASSAY_SIGNING_KEY"
    assert (
        signer.fingerprint
        == load_signer(
            None, environ={"ASSAY_SIGNING_KEY": private_pem(key)}
        ).fingerprint
    )


def test_signer_rejects_invalid_key():
    with pytest.raises(
        ConfigError, match="ASSAY_SIGNING_KEY is not an unencrypted Ed25519"
    ):
        load_signer(None, environ={"ASSAY_SIGNING_KEY": "not-a-key"})


def test_signer_reads_key_file(tmp_path, key):
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "signing.pem").write_text(private_pem(key))
    (tmp_path / "assay.yaml").write_text(
        "evidence:\n  signing_key_file: keys/signing.pem\n"
    )
    config = load_config(tmp_path / "assay.yaml")

    signer = load_signer(config, environ={})

    assert signer.self_made is False
    assert signer.source == "key file keys/signing.pem"


def test_signer_rejects_key_inside_evidence(tmp_path, key):
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "signing.pem").write_text(private_pem(key))
    (tmp_path / "assay.yaml").write_text(
        "evidence:\n  signing_key_file: reports/signing.pem\n"
    )
    config = load_config(tmp_path / "assay.yaml")

    with pytest.raises(ConfigError) as caught:
        load_signer(config, environ={}, report_dir=tmp_path / "reports" / "run-1")

    assert "inside the evidence folder" in str(caught.value)
    assert "assay.yaml:2" in str(caught.value)


CATALOG = """\
family: sample
controls:
  - id: XX-1
    title: Sample control
    claim: The sample holds.
    criteria: [CC6.1]
    severity: high
    checks: [sample::test_sample]
"""

PASSING = """
import pytest

@pytest.mark.control("XX-1")
def test_sample(evidence):
    evidence.examined_count("things", 3)
    evidence.verdict()
"""


@pytest.fixture
def project(pytester):
    controls = pytester.mkdir("controls")
    (controls / "criteria.yaml").write_text("criteria:\n  CC6.1: Logical access\n")
    (controls / "sample.yaml").write_text(CATALOG)
    pytester.makefile(".yaml", assay="controls_dir: controls\n")
    pytester.makepyfile(test_sample=textwrap.dedent(PASSING))
    return pytester


def run_project(project, monkeypatch, signing_key: str | None) -> Path:
    if signing_key is None:
        monkeypatch.delenv("ASSAY_SIGNING_KEY", raising=False)
    else:
        monkeypatch.setenv("ASSAY_SIGNING_KEY", signing_key)
    report_dir = project.path / "out"
    result = project.runpytest_subprocess(
        "-p",
        "assay.fixtures.core",
        "--assay-config",
        str(project.path / "assay.yaml"),
        "--assay-report-dir",
        str(report_dir),
        "--junitxml",
        str(report_dir / "junit.xml"),
        "-p",
        "no:cacheprovider",
    )
    result.assert_outcomes(passed=1)
    return report_dir


def test_run_signs_final_folder(project, monkeypatch, key, tmp_path):
    report_dir = run_project(project, monkeypatch, private_pem(key))
    evidence = json.loads((report_dir / "evidence.json").read_text())
    manifest = json.loads((report_dir / MANIFEST_FILE).read_text())

    result = verify_folder(report_dir, public_pem_file(key, tmp_path / "pub.pem"))

    assert {item["path"] for item in manifest["files"]} >= {
        "evidence.json",
        "junit.xml",
        "report.html",
        "results.sarif",
        "oscal-assessment-results.json",
    }
    assert result.warnings == ()
    assert evidence["run"]["signature"]["self_made"] is False


def test_run_without_key_is_self_made(project, monkeypatch):
    report_dir = run_project(project, monkeypatch, None)
    evidence = json.loads((report_dir / "evidence.json").read_text())
    html = (report_dir / "report.html").read_text()

    result = verify_folder(report_dir)

    assert result.self_made is True
    assert evidence["run"]["signature"]["self_made"] is True
    assert "The signature on this evidence is self-made" in html
