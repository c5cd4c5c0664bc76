"""Secret file names, credential formats and the generated probe repository."""

from __future__ import annotations

import subprocess

import pytest

from assay.canaries import registered
from assay.secrets import (
    CREDENTIAL_FORMATS,
    SECRET_FILE_PATTERNS,
    ProbeRepository,
    build_probe_repository,
    find_credentials,
    secret_file_pattern,
)

# Every secret file name the reference lists, as a path the probe must plant.
REFERENCE_SECRET_FILES = [
    ".env",
    ".env.local",
    ".env.development",
    ".env.production",
    ".env.staging",
    "services/api/.env.test",
    "certs/server.pem",
    "certs/tls.key",
    "deploy/id_rsa",
    "deploy/id_ed25519",
    "deploy/github_rsa",
    "certs/client.p12",
    "certs/signing.pfx",
    "android/release.jks",
    ".npmrc",
    ".pypirc",
    ".netrc",
    ".pgpass",
    ".git-credentials",
    ".aws/credentials",
    "credentials.json",
    "infra/gcp-service-account.json",
    "config/secrets.yml",
    "secrets.yml",
    "k8s/secret.yaml",
    "infra/terraform.tfvars",
    "ops/team.kdbx",
]

# The credential kinds the reference lists, each of which needs a probe file.
REFERENCE_FORMATS = [
    "aws-access-key-id",
    "aws-secret-access-key",
    "github-personal-access-token",
    "github-oauth-token",
    "github-user-to-server-token",
    "github-server-to-server-token",
    "github-refresh-token",
    "github-fine-grained-token",
    "slack-bot-token",
    "slack-user-token",
    "slack-config-token",
    "slack-app-token",
    "slack-webhook-url",
    "stripe-secret-key",
    "stripe-restricted-key",
    "razorpay-key-id",
    "razorpay-key-secret",
    "google-api-key",
    "gcp-service-account",
    "rsa-private-key",
    "ec-private-key",
    "dsa-private-key",
    "openssh-private-key",
    "pkcs8-private-key",
    "pgp-private-key",
    "putty-private-key",
    "jwt",
    "supabase-service-role-jwt",
    "supabase-secret-key",
    "supabase-access-token",
    "openai-project-key",
    "openai-service-account-key",
    "openai-admin-key",
    "anthropic-api-key",
    "twilio-api-key",
    "twilio-account-sid",
    "sendgrid-api-key",
    "npm-access-token",
    "pypi-upload-token",
    "gitlab-personal-access-token",
    "hugging-face-token",
    "linear-api-key",
    "password-in-url",
]


@pytest.fixture(scope="module", autouse=True)
def canary_registry(tmp_path_factory):
    """A registry folder of this module's own, removed with pytest's temporary files."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ASSAY_CANARY_DIR", str(tmp_path_factory.mktemp("canaries")))
        yield


@pytest.fixture(scope="module")
def probe(tmp_path_factory) -> ProbeRepository:
    return build_probe_repository(tmp_path_factory.mktemp("probe") / "repo")


def read(probe: ProbeRepository, relative: str) -> str:
    return (probe.path / relative).read_bytes().decode("latin-1")


def test_probe_is_committed_git_repository(probe):
    tracked = subprocess.run(
        ["git", "-C", str(probe.path), "ls-files"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    status = subprocess.run(
        ["git", "-C", str(probe.path), "status", "--porcelain"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    assert sorted(tracked) == sorted(f.path for f in probe.files)
    assert status == ""
    assert len(probe.commit) == 40


def test_probe_plants_every_secret_file_name(probe):
    planted = [f.path for f in probe.of_kind("secret-file")]

    assert planted == REFERENCE_SECRET_FILES


def test_probe_covers_every_secret_pattern(probe):
    covered = {f.pattern for f in probe.of_kind("secret-file")}
    # id_dsa, id_ecdsa, secrets.yaml and secret.yml share a rule with a planted file.
    uncovered = set(SECRET_FILE_PATTERNS) - covered

    assert uncovered == {"id_dsa", "id_ecdsa", "secrets.yaml", "secret.yml"}


def test_probe_plants_every_credential_format(probe):
    planted = [f.pattern for f in probe.of_kind("credential")]

    assert planted == REFERENCE_FORMATS
    assert [c.name for c in CREDENTIAL_FORMATS] == REFERENCE_FORMATS


@pytest.mark.parametrize("name", REFERENCE_FORMATS)
def test_credential_file_matches_own_format(probe, name):
    (planted,) = [f for f in probe.of_kind("credential") if f.pattern == name]
    text = read(probe, planted.path)

    found = {format_name for format_name, _ in find_credentials(text)}

    assert name in found
    # A Supabase service-role key is also a JWT; nothing else overlaps.
    assert found - {name, "jwt"} == set()
    assert planted.canary.value in text
    assert secret_file_pattern(planted.path) is None


@pytest.mark.parametrize("credential", CREDENTIAL_FORMATS, ids=lambda c: c.name)
def test_generated_values_always_match(credential):
    # Random values end in any character of their alphabet, "-" included.
    for _ in range(200):
        text, canary = credential.generate()
        content = credential.template.replace("{value}", text)

        match = credential.pattern.search(content)

        assert match is not None, content
        assert credential.confirm is None or credential.confirm(match.group())
        assert canary in content


def test_secret_files_hold_no_credential_format(probe):
    for planted in probe.of_kind("secret-file"):
        text = read(probe, planted.path)

        assert find_credentials(text) == [], planted.path
        assert secret_file_pattern(planted.path) == planted.pattern
        assert planted.canary.value in text


def test_ordinary_files_match_nothing(probe):
    for planted in probe.of_kind("ordinary"):
        text = read(probe, planted.path)

        assert find_credentials(text) == [], planted.path
        assert secret_file_pattern(planted.path) is None, planted.path
        assert planted.canary.value in text


def test_every_canary_registered_and_unique(probe):
    values = {c.value for c in registered()}
    planted = [f.canary.value for f in probe.files]

    assert set(planted) <= values
    assert len(set(planted)) == len(planted)


def test_two_probes_differ(tmp_path):
    first = build_probe_repository(tmp_path / "one")
    second = build_probe_repository(tmp_path / "two")

    assert {f.canary.value for f in first.files}.isdisjoint(
        f.canary.value for f in second.files
    )


@pytest.mark.parametrize(
    "path, pattern",
    [
        (".env", ".env"),
        ("app/.env.production", ".env.*"),
        ("keys/prod.pem", "*.pem"),
        ("home/.ssh/id_ed25519", "id_ed25519"),
        ("home/.aws/credentials", ".aws/credentials"),
        ("deploy/billing-service-account.json", "*service-account*.json"),
        ("vault.kdbx", "*.kdbx"),
    ],
)
def test_secret_file_pattern_matches(path, pattern):
    assert secret_file_pattern(path) == pattern


@pytest.mark.parametrize(
    "path",
    ["src/environment.py", ".envrc", "docs/secrets-management.md", "id_rsa.pub", "key.txt"],
)
def test_near_miss_names_are_ordinary(path):
    assert secret_file_pattern(path) is None


@pytest.mark.parametrize(
    "text",
    [
        'API_BASE = "https://api.example.com/v1"',
        "token = request.headers['Authorization']",
        "sk-short-key",
        "eyJhbGciOiJIUzI1NiJ9",
        "https://user@example.com/path",
    ],
)
def test_ordinary_code_has_no_credentials(text):
    assert find_credentials(text) == []


def test_missing_git_raises_target_error(tmp_path, monkeypatch):
    from assay.errors import TargetError

    monkeypatch.setenv("PATH", str(tmp_path / "empty"))

    with pytest.raises(TargetError, match="git not found"):
        build_probe_repository(tmp_path / "repo")

