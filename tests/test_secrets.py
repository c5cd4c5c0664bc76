"""Secret file names, credential formats and the generated probe repository."""

from __future__ import annotations

import base64
import subprocess
import sys
import uuid

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from assay.canaries import registered
from assay.config import load_config
from assay.errors import ConfigError, TargetError
from assay.indexer_probe import (
    IndexerRun,
    StoredSource,
    judge,
    placeholder_values,
    read_stored,
    render_command,
    run_indexer,
)
from assay.secrets import (
    CREDENTIAL_FORMATS,
    SECRET_FILE_PATTERNS,
    ProbeRepository,
    build_probe_repository,
    find_credentials,
    secret_file_pattern,
)

# Every secret file name of gitleaks' and detect-secrets' lists that the probe
# plants, including the three public scanners miss by name (secrets.yml,
# .pypirc, credentials.json), as the path it plants.
EXPECTED_SECRET_FILES = [
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

# Every credential format the probe plants, one ordinary file each.
EXPECTED_FORMATS = [
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

    assert planted == EXPECTED_SECRET_FILES


def test_probe_covers_every_secret_pattern(probe):
    covered = {f.pattern for f in probe.of_kind("secret-file")}
    # id_dsa, id_ecdsa, secrets.yaml and secret.yml share a rule with a planted file.
    uncovered = set(SECRET_FILE_PATTERNS) - covered

    assert uncovered == {"id_dsa", "id_ecdsa", "secrets.yaml", "secret.yml"}


def test_probe_plants_every_credential_format(probe):
    planted = [f.pattern for f in probe.of_kind("credential")]

    assert planted == EXPECTED_FORMATS
    assert [c.name for c in CREDENTIAL_FORMATS] == EXPECTED_FORMATS


@pytest.mark.parametrize("name", EXPECTED_FORMATS)
def test_credential_file_matches_own_format(probe, name):
    (planted,) = [f for f in probe.of_kind("credential") if f.pattern == name]
    text = read(probe, planted.path)

    found = {format_name for format_name, _ in find_credentials(text)}

    assert name in found
    # A Supabase service-role key is also a JWT, and nothing else overlaps.
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
    [
        "src/environment.py",
        ".envrc",
        "docs/secrets-management.md",
        "id_rsa.pub",
        "key.txt",
    ],
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
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))

    with pytest.raises(TargetError, match="git not found"):
        build_probe_repository(tmp_path / "repo")


# The indexer probe without a database ------------------------------------------


def indexer_config(tmp_path, command: str, extra: str = ""):
    (tmp_path / "assay.yaml").write_text(f"indexer:\n  command: {command!r}\n" + extra)
    return load_config(tmp_path / "assay.yaml")


def values_for(tmp_path):
    return placeholder_values(
        tmp_path / "my repo", "postgresql://h/db", "org-1", tmp_path
    )


def test_command_placeholders_fill_whole_arguments(tmp_path):
    config = indexer_config(
        tmp_path, "{python} -m idx --repo {repo} --org={organization_id}"
    )

    command = render_command(config, values_for(tmp_path))

    assert command == [
        sys.executable,
        "-m",
        "idx",
        "--repo",
        str(tmp_path / "my repo"),
        "--org=org-1",
    ]


def test_unknown_placeholder_names_line(tmp_path):
    config = indexer_config(tmp_path, "idx --repo {repository}")

    with pytest.raises(ConfigError) as raised:
        render_command(config, values_for(tmp_path))

    assert raised.value.line == 2
    assert "unknown placeholder {repository}" in str(raised.value)


def test_endpoint_only_is_config_error(tmp_path):
    (tmp_path / "assay.yaml").write_text("indexer:\n  endpoint: /api/index\n")

    with pytest.raises(ConfigError, match="cannot be probed yet"):
        render_command(load_config(tmp_path / "assay.yaml"), values_for(tmp_path))


def test_missing_program_is_config_error(tmp_path):
    config = indexer_config(tmp_path, "no-such-indexer-program {repo}")

    with pytest.raises(
        ConfigError, match="program 'no-such-indexer-program' not found"
    ):
        run_indexer(config, values_for(tmp_path), [])


def test_failing_indexer_stderr_redacted(tmp_path, probe):
    secret = probe.of_kind("secret-file")[0].canary
    script = tmp_path / "idx.py"
    script.write_text(
        f"import sys\nsys.stderr.write('read {secret.value}\\n')\nsys.exit(3)\n"
    )
    config = indexer_config(tmp_path, "{python} idx.py")

    with pytest.raises(TargetError) as raised:
        run_indexer(config, values_for(tmp_path), [secret])

    assert "exited with status 3" in str(raised.value)
    assert secret.value not in str(raised.value)
    assert secret.redacted() in str(raised.value)


def test_indexer_env_filled(tmp_path):
    script = tmp_path / "idx.py"
    script.write_text("import os\nprint(os.environ['INDEX_ORG'])\n")
    config = indexer_config(
        tmp_path, "{python} idx.py", "  env: {INDEX_ORG: 'org={organization_id}'}\n"
    )

    run = run_indexer(config, values_for(tmp_path), [])

    assert run.stdout.decode().strip() == "org=org-1"
    assert run.returncode == 0


def test_timeout_is_target_error(tmp_path):
    (tmp_path / "idx.py").write_text("import time\ntime.sleep(5)\n")
    config = indexer_config(tmp_path, "{python} idx.py", "  timeout: 0.5\n")

    with pytest.raises(TargetError, match="timed out after indexer.timeout=0.5 s"):
        run_indexer(config, values_for(tmp_path), [])


def test_judge_finds_leaks_in_any_encoding(probe):
    env_local = next(f for f in probe.files if f.path == ".env.local")
    token = next(f for f in probe.files if f.pattern == "github-personal-access-token")
    ordinary = probe.of_kind("ordinary")
    stored = "\n".join(f.canary.value for f in ordinary[1:]) + "\n" + token.canary.value
    sources = [
        StoredSource("table public.files.body", stored.encode()),
        StoredSource(
            "file out/index.json", base64.b64encode(env_local.canary.value.encode())
        ),
    ]

    verdict = judge(probe, sources)
    by_file = {f.file: f for f in verdict.findings}

    assert set(by_file) == {".env.local", "tools/release.py", ordinary[0].path}
    assert by_file[".env.local"].rule == "secret-file-indexed"
    assert by_file[".env.local"].details["found_in"] == [
        {"source": "file out/index.json", "encoding": "base64"}
    ]
    assert "'.env.*'" in by_file[".env.local"].message
    assert by_file["tools/release.py"].rule == "credential-indexed"
    assert "table public.files.body" in by_file["tools/release.py"].message
    assert by_file[ordinary[0].path].level == "undecided"
    assert verdict.counts["leaks"] == 2
    assert verdict.counts["ordinary files indexed"] == len(ordinary) - 1


def test_judge_never_puts_canary_in_findings(probe):
    stored = "\n".join(f.canary.value for f in probe.files)

    verdict = judge(probe, [StoredSource("indexer stdout", stored.encode())])
    text = repr(verdict.findings) + repr(verdict.inventory)

    assert len(verdict.findings) == len(probe.files) - len(probe.of_kind("ordinary"))
    for planted in probe.files:
        assert planted.canary.value not in text


def test_outputs_and_read_sql_searched(tmp_path, probe, shared_postgres_url):
    secret = next(f for f in probe.files if f.path == ".pypirc")
    (tmp_path / "index").mkdir()
    (tmp_path / "index" / "chunks.jsonl").write_text(
        f'{{"text": "{secret.canary.value}"}}\n'
    )
    config = indexer_config(
        tmp_path,
        "idx",
        "  outputs: ['{workdir}/../index']\n"
        "  read_sql: select {organization_id}::text as org\n",
    )
    workdir = tmp_path / "work"
    workdir.mkdir()
    values = placeholder_values(probe.path, "postgresql://h/db", "org-1", workdir)
    run = IndexerRun(("idx",), 0, b"indexed 3 files\n", b"", 0.1)
    name = f"probe_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(shared_postgres_url, autocommit=True) as admin:
        admin.execute(f"create database {name}")
    try:
        dsn = make_conninfo(shared_postgres_url, dbname=name)
        sources, counts = read_stored(config, dsn, "org-1", values, run)
    finally:
        with psycopg.connect(shared_postgres_url, autocommit=True) as admin:
            admin.execute(f"drop database {name} with (force)")

    names = [source.name for source in sources]
    verdict = judge(probe, sources)
    (leak,) = [f for f in verdict.findings if f.level == "error"]
    assert names == [
        "indexer.read_sql",
        "file index/chunks.jsonl",
        "indexer stdout",
        "indexer stderr",
    ]
    assert counts["read_sql_rows"] == 1
    assert leak.file == ".pypirc"
    assert leak.details["found_in"] == [
        {"source": "file index/chunks.jsonl", "encoding": "raw"}
    ]
