"""`assay upload vanta` against a local fake of the Vanta API on loopback."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from assay.cli import main
from assay.config import load_config
from assay.integrations.vanta import VantaError, upload
from assay.manifest import load_signer, verify_folder
from fakes.evidence import control, evidence_document, write_folder
from fakes.vanta import FakeVanta

ALL_SCOPES = ["vanta-api.documents:upload", "connectors.self:write-resource"]


@pytest.fixture(scope="session")
def fake():
    server = FakeVanta()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def public_key(tmp_path, key) -> Path:
    path = tmp_path / "signing.pub.pem"
    path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path


@pytest.fixture
def folder(tmp_path, key) -> Path:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    signer = load_signer(None, environ={"ASSAY_SIGNING_KEY": pem})
    return write_folder(tmp_path / "run", evidence_document(), signer)


class Target:
    """One test's Vanta application, documents, resource type and assay.yaml."""

    def __init__(self, fake: FakeVanta, tmp_path: Path, monkeypatch, scopes=ALL_SCOPES):
        self.fake = fake
        self.client_id, self.secret = fake.add_app(scopes)
        self.report_doc = fake.add_document()
        self.oscal_doc = fake.add_document()
        self.resource_id = fake.add_resource_type()
        self.config = tmp_path / "assay.yaml"
        monkeypatch.setenv("TEST_VANTA_ID", self.client_id)
        monkeypatch.setenv("TEST_VANTA_SECRET", self.secret)
        monkeypatch.delenv("ASSAY_SIGNING_KEY", raising=False)
        self.write()

    def write(self, **overrides) -> Path:
        settings = {
            "base_url": self.fake.base_url,
            "client_id_env": "TEST_VANTA_ID",
            "client_secret_env": "TEST_VANTA_SECRET",
            "documents": {
                "report.html": self.report_doc,
                "oscal-assessment-results.json": self.oscal_doc,
            },
            "resource_id": self.resource_id,
            "external_url": "https://ci.example.com/runs/{commit}#{control}",
            "max_retries": 3,
            "max_wait_seconds": 5,
        }
        settings.update(overrides)
        settings = {k: v for k, v in settings.items() if v is not None}
        self.config.write_text(json.dumps({"vanta": settings}, indent=2) + "\n")
        return self.config

    def inject(self, method: str, path: str, status: int, **options) -> None:
        self.fake.inject(method, path, status, client_id=self.client_id, **options)

    def requests(self) -> list[tuple[str, str, int]]:
        return [
            (r["method"], r["path"], r["status"])
            for r in self.fake.requests(self.client_id)
        ]


@pytest.fixture
def target(fake, tmp_path, monkeypatch) -> Target:
    return Target(fake, tmp_path, monkeypatch)


def snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def run_upload(target: Target, folder: Path, public_key: Path, *extra: str) -> int:
    return main(
        [
            "upload",
            "vanta",
            str(folder),
            "--config",
            str(target.config),
            "--public-key",
            str(public_key),
            *extra,
        ]
    )


# Success ---------------------------------------------------------------------


def test_upload_sends_documents_and_resources(target, folder, public_key, capsys):
    status = run_upload(target, folder, public_key)
    out, err = capsys.readouterr()

    assert status == 0, err
    assert target.requests() == [
        ("POST", "/oauth/token", 200),
        ("POST", f"/v1/documents/{target.report_doc}/uploads", 200),
        ("POST", f"/v1/documents/{target.oscal_doc}/uploads", 200),
        ("POST", f"/v1/documents/{target.report_doc}/submit", 200),
        ("POST", f"/v1/documents/{target.oscal_doc}/submit", 200),
        ("PUT", "/v1/resources/custom_resource/sync_all", 200),
    ]
    assert f"PUT {target.fake.base_url}/v1/resources/custom_resource/sync_all: 200" in out
    assert target.secret not in out + err


def test_upload_stores_exact_files(target, folder, public_key):
    run_upload(target, folder, public_key)
    submitted = target.fake.documents[target.report_doc].submitted

    assert len(submitted) == 1
    assert submitted[0]["fileName"] == "report.html"
    assert submitted[0]["contentType"] == "text/html"
    assert submitted[0]["sha256"] == hashlib.sha256(
        (folder / "report.html").read_bytes()
    ).hexdigest()
    assert "4 controls" not in submitted[0]["description"]
    assert "1 passed, 1 failed, 1 waived, 1 not applicable" in submitted[0]["description"]
    assert submitted[0]["effectiveAtDate"] == "2026-01-05T10:01:30+00:00"


def test_upload_syncs_every_control(target, folder, public_key):
    run_upload(target, folder, public_key)
    resources = target.fake.resources[target.resource_id]

    assert sorted(resources) == ["assay-TI-1", "assay-TI-2", "assay-TI-3", "assay-TI-4"]
    ti2 = resources["assay-TI-2"]
    assert ti2["customProperties"]["status"] == "failed"
    assert ti2["customProperties"]["passing"] is False
    assert ti2["customProperties"]["blockingFindings"] == 1
    assert ti2["externalUrl"] == (
        "https://ci.example.com/runs/0123456789abcdef0123456789abcdef01234567#TI-2"
    )


def test_sync_replaces_whole_set(target, folder, public_key, tmp_path, key):
    run_upload(target, folder, public_key)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    smaller = write_folder(
        tmp_path / "smaller",
        evidence_document([control("TI-1", "passed"), control("TI-2", "passed")]),
        load_signer(None, environ={"ASSAY_SIGNING_KEY": pem}),
    )

    status = run_upload(target, smaller, public_key)

    assert status == 0
    assert sorted(target.fake.resources[target.resource_id]) == ["assay-TI-1", "assay-TI-2"]
    assert target.fake.deleted[target.resource_id] == ["assay-TI-3", "assay-TI-4"]


def test_dry_run_sends_nothing(target, folder, public_key, capsys):
    status = run_upload(target, folder, public_key, "--dry-run")
    out, _ = capsys.readouterr()

    assert status == 0
    assert target.requests() == []
    assert f"POST {target.fake.base_url}/oauth/token" in out
    assert '"client_secret": "<redacted>"' in out
    assert out.count("Authorization: Bearer <redacted>") == 5
    assert "multipart file=report.html" in out
    assert '"uniqueId": "assay-TI-4"' in out
    assert target.secret not in out
    assert out.endswith("dry run: nothing was sent\n")


# Rate limits -----------------------------------------------------------------


def test_upload_honours_retry_after(target, folder):
    target.inject("POST", r"/uploads$", 429, retry_after="2")
    waits: list[float] = []
    config = load_config(target.write())

    sent = upload(
        folder,
        json.loads((folder / "evidence.json").read_text()),
        config,
        environ={"TEST_VANTA_ID": target.client_id, "TEST_VANTA_SECRET": target.secret},
        sleep=waits.append,
        out=io.StringIO(),
    )

    assert waits == [2.0]
    assert len(sent) == 5
    assert target.requests()[1:3] == [
        ("POST", f"/v1/documents/{target.report_doc}/uploads", 429),
        ("POST", f"/v1/documents/{target.report_doc}/uploads", 200),
    ]


def test_upload_backs_off_without_retry_after(target, folder):
    target.inject("PUT", r"sync_all", 429, times=2)
    waits: list[float] = []
    config = load_config(target.write())

    upload(
        folder,
        json.loads((folder / "evidence.json").read_text()),
        config,
        environ={"TEST_VANTA_ID": target.client_id, "TEST_VANTA_SECRET": target.secret},
        sleep=waits.append,
        out=io.StringIO(),
    )

    assert waits == [1.0, 2.0]


def test_upload_gives_up_after_max_retries(target, folder):
    target.inject("POST", r"/submit$", 429, times=10, retry_after="1")
    waits: list[float] = []
    config = load_config(target.write(max_retries=2))

    with pytest.raises(VantaError) as caught:
        upload(
            folder,
            json.loads((folder / "evidence.json").read_text()),
            config,
            environ={"TEST_VANTA_ID": target.client_id, "TEST_VANTA_SECRET": target.secret},
            sleep=waits.append,
            out=io.StringIO(),
        )

    assert waits == [1.0, 1.0]
    assert "responded 429 (rate limited) 3 times" in str(caught.value)
    assert "already sent: upload report.html" in str(caught.value)


def test_upload_rejects_long_retry_after(target, folder, public_key, capsys):
    target.inject("POST", r"/oauth/token", 429, retry_after="3600")
    before = snapshot(folder)

    status = run_upload(target, folder, public_key)
    _, err = capsys.readouterr()

    assert status == 1
    assert "the last Retry-After was 3600 s" in err
    assert "nothing was sent" in err
    assert snapshot(folder) == before


def test_upload_retries_429_from_cli(target, folder, public_key, capsys):
    target.inject("PUT", r"sync_all", 429, retry_after="1")

    status = run_upload(target, folder, public_key)

    assert status == 0, capsys.readouterr().err
    assert [r[2] for r in target.requests()[-2:]] == [429, 200]


# Failures ----------------------------------------------------------------------


def assert_failed_cleanly(status, err, folder, before, public_key):
    assert status == 1
    assert "Traceback" not in err
    assert snapshot(folder) == before
    assert verify_folder(folder, public_key).files == 6


def test_wrong_secret_is_401(target, folder, public_key, capsys, monkeypatch):
    monkeypatch.setenv("TEST_VANTA_SECRET", "wrong-secret-value")
    before = snapshot(folder)

    status = run_upload(target, folder, public_key)
    _, err = capsys.readouterr()

    assert_failed_cleanly(status, err, folder, before, public_key)
    assert "rejected the client credentials or scopes (401" in err
    assert "check TEST_VANTA_ID, TEST_VANTA_SECRET" in err
    assert "wrong-secret-value" not in err


def test_unknown_scope_is_rejected(fake, tmp_path, monkeypatch, folder, public_key, capsys):
    target = Target(fake, tmp_path, monkeypatch, scopes=["vanta-api.documents:upload"])
    before = snapshot(folder)

    status = run_upload(target, folder, public_key)
    _, err = capsys.readouterr()

    assert_failed_cleanly(status, err, folder, before, public_key)
    assert "invalid_scope" in err
    assert target.requests() == [("POST", "/oauth/token", 400)]


def test_missing_scope_is_403(fake, tmp_path, monkeypatch, folder, public_key, capsys):
    target = Target(fake, tmp_path, monkeypatch, scopes=["vanta-api.documents:upload"])
    target.write(scopes=["vanta-api.documents:upload"])
    before = snapshot(folder)

    status = run_upload(target, folder, public_key)
    _, err = capsys.readouterr()

    assert_failed_cleanly(status, err, folder, before, public_key)
    assert "refused the call (403" in err
    assert "already sent: upload report.html" in err
    assert target.requests()[-1] == ("PUT", "/v1/resources/custom_resource/sync_all", 403)


def test_revoked_token_is_401(target, folder, public_key, capsys):
    target.inject("POST", r"/uploads$", 401, body={"error": "revoked access token"})
    before = snapshot(folder)

    status = run_upload(target, folder, public_key)
    _, err = capsys.readouterr()

    assert_failed_cleanly(status, err, folder, before, public_key)
    assert "rejected the access token (401" in err
    assert "Run one upload at a time" in err


def test_server_error_is_500(target, folder, public_key, capsys):
    target.inject("POST", r"/submit$", 500)
    before = snapshot(folder)

    status = run_upload(target, folder, public_key)
    _, err = capsys.readouterr()

    assert_failed_cleanly(status, err, folder, before, public_key)
    assert "Vanta responded 500" in err
    assert "already sent: upload report.html to document" in err


def test_unreachable_vanta(target, folder, public_key, capsys):
    target.write(base_url="http://127.0.0.1:9")
    before = snapshot(folder)

    status = run_upload(target, folder, public_key)
    _, err = capsys.readouterr()

    assert_failed_cleanly(status, err, folder, before, public_key)
    assert "could not reach Vanta (ConnectError" in err


# Bad input -------------------------------------------------------------------


def test_empty_document_id(target, folder, public_key, capsys):
    target.write(documents={"report.html": ""})

    status = run_upload(target, folder, public_key)
    _, err = capsys.readouterr()

    assert status == 2
    assert "vanta.documents.report.html='': missing document id" in err
    assert target.requests() == []


def test_null_document_id(target, folder, public_key, capsys):
    target.write(documents={"report.html": None})

    status = run_upload(target, folder, public_key)
    _, err = capsys.readouterr()

    assert status == 2
    assert "vanta.documents.report.html: expected a string" in err


def test_document_file_not_in_folder(target, folder, public_key, capsys):
    target.write(documents={"summary.pdf": "doc-1"})

    status = run_upload(target, folder, public_key)
    _, err = capsys.readouterr()

    assert status == 2
    assert "no such file in" in err
    assert target.requests() == []


def test_missing_secret_variable(target, folder, public_key, capsys, monkeypatch):
    monkeypatch.delenv("TEST_VANTA_SECRET")

    status = run_upload(target, folder, public_key)
    _, err = capsys.readouterr()

    assert status == 2
    assert "environment variable TEST_VANTA_SECRET is not set" in err


def test_plain_http_to_remote_host(target, folder, public_key, capsys):
    target.write(base_url="http://vanta.example.com")

    status = run_upload(target, folder, public_key)
    _, err = capsys.readouterr()

    assert status == 2
    assert "client secrets travel only over https" in err


def test_missing_vanta_section(target, folder, public_key, capsys):
    target.config.write_text("evidence:\n  report_dir: reports\n")

    status = run_upload(target, folder, public_key)
    _, err = capsys.readouterr()

    assert status == 2
    assert "no vanta section" in err


def test_tampered_folder_not_uploaded(target, folder, public_key, capsys):
    (folder / "evidence.json").write_text(
        (folder / "evidence.json").read_text().replace('"failed"', '"passed"')
    )

    status = run_upload(target, folder, public_key)
    _, err = capsys.readouterr()

    assert status == 1
    assert "changed: evidence.json" in err
    assert target.requests() == []


def test_truncated_folder_not_uploaded(target, folder, public_key, capsys):
    (folder / "report.html").write_bytes((folder / "report.html").read_bytes()[:500])

    status = run_upload(target, folder, public_key)
    _, err = capsys.readouterr()

    assert status == 1
    assert "changed: report.html" in err
    assert target.requests() == []


# The fake's own rules ------------------------------------------------------------


def token(fake: FakeVanta, client_id: str, secret: str, scope: str) -> httpx.Response:
    return httpx.post(
        fake.base_url + "/oauth/token",
        json={
            "client_id": client_id,
            "client_secret": secret,
            "scope": scope,
            "grant_type": "client_credentials",
        },
    )


def test_fake_new_token_revokes_old(fake):
    client_id, secret = fake.add_app(["vanta-api.all:read"])
    first = token(fake, client_id, secret, "vanta-api.all:read").json()["access_token"]
    second = token(fake, client_id, secret, "vanta-api.all:read").json()["access_token"]

    old = httpx.get(fake.base_url + "/v1/documents", headers={"Authorization": f"Bearer {first}"})
    new = httpx.get(fake.base_url + "/v1/documents", headers={"Authorization": f"Bearer {second}"})

    assert old.status_code == 401
    assert old.json() == {"error": "revoked access token"}
    assert new.status_code == 200


def test_fake_limits_token_requests(fake):
    client_id, secret = fake.add_app(["vanta-api.all:read"])
    answers = [token(fake, client_id, secret, "vanta-api.all:read") for _ in range(6)]

    assert [a.status_code for a in answers] == [200] * 5 + [429]
    assert 1 <= int(answers[-1].headers["Retry-After"]) <= 60


def test_fake_requires_multipart_file(fake):
    client_id, secret = fake.add_app(["vanta-api.documents:upload"])
    access = token(fake, client_id, secret, "vanta-api.documents:upload").json()
    document = fake.add_document()
    headers = {"Authorization": f"Bearer {access['access_token']}"}

    no_file = httpx.post(
        f"{fake.base_url}/v1/documents/{document}/uploads",
        headers=headers,
        files={"description": (None, "x")},
    )
    not_multipart = httpx.post(
        f"{fake.base_url}/v1/documents/{document}/uploads", headers=headers, json={}
    )

    assert no_file.status_code == 400
    assert not_multipart.status_code == 415
