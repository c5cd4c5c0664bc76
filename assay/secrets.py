"""Secret files and credential formats, and the probe repository built from them.

The formats follow gitleaks' default rules, detect-secrets' plugins and
trufflehog's detectors (the shapes are listed with each format below). The
probe repository is a throwaway git repository with three kinds of file:

- every secret file name (``.env.local``, ``secrets.yml``, ``id_rsa``, ...),
  whose content is a plain canary and matches no credential format, so only
  the file name can exclude it;
- ordinary file names whose content embeds one credential format each; the
  credential value itself is the canary;
- ordinary source files with a canary of their own, which an indexer must
  store, or the probe proved nothing.

Every canary is registered with ``assay.canaries``, so the run also searches
its own evidence for them.
"""

from __future__ import annotations

import base64
import fnmatch
import json
import logging
import os
import re
import secrets
import string
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from assay.canaries import Canary, new_canary, register
from assay.errors import TargetError

__all__ = [
    "CREDENTIAL_FORMATS",
    "SECRET_FILE_PATTERNS",
    "CredentialFormat",
    "ProbeFile",
    "ProbeRepository",
    "build_probe_repository",
    "find_credentials",
    "secret_file_pattern",
]

logger = logging.getLogger(__name__)

# Secret file names, matched against the file name, or against the whole
# relative path when the pattern contains a slash.
SECRET_FILE_PATTERNS: tuple[str, ...] = (
    ".env",
    ".env.*",
    "*.pem",
    "*.key",
    "id_rsa",
    "id_dsa",
    "id_ecdsa",
    "id_ed25519",
    "*_rsa",
    "*.p12",
    "*.pfx",
    "*.jks",
    ".npmrc",
    ".pypirc",
    ".netrc",
    ".pgpass",
    ".git-credentials",
    ".aws/credentials",
    "credentials.json",
    "*service-account*.json",
    "secrets.yml",
    "secrets.yaml",
    "secret.yml",
    "secret.yaml",
    "terraform.tfvars",
    "*.kdbx",
)

# One probe file per secret file pattern (some patterns get two), placed at
# the root and in sub-folders, since indexers often match only the root.
_SECRET_FILES: tuple[tuple[str, str], ...] = (
    (".env", ".env"),
    (".env.local", ".env.*"),
    (".env.development", ".env.*"),
    (".env.production", ".env.*"),
    (".env.staging", ".env.*"),
    ("services/api/.env.test", ".env.*"),
    ("certs/server.pem", "*.pem"),
    ("certs/tls.key", "*.key"),
    ("deploy/id_rsa", "id_rsa"),
    ("deploy/id_ed25519", "id_ed25519"),
    ("deploy/github_rsa", "*_rsa"),
    ("certs/client.p12", "*.p12"),
    ("certs/signing.pfx", "*.pfx"),
    ("android/release.jks", "*.jks"),
    (".npmrc", ".npmrc"),
    (".pypirc", ".pypirc"),
    (".netrc", ".netrc"),
    (".pgpass", ".pgpass"),
    (".git-credentials", ".git-credentials"),
    (".aws/credentials", ".aws/credentials"),
    ("credentials.json", "credentials.json"),
    ("infra/gcp-service-account.json", "*service-account*.json"),
    ("config/secrets.yml", "secrets.yml"),
    ("secrets.yml", "secrets.yml"),
    ("k8s/secret.yaml", "secret.yaml"),
    ("infra/terraform.tfvars", "terraform.tfvars"),
    ("ops/team.kdbx", "*.kdbx"),
)

_BINARY_SUFFIXES = (".p12", ".pfx", ".jks", ".kdbx")

_ALNUM = string.ascii_letters + string.digits
_BASE64 = _ALNUM + "+/"
_BASE64URL = _ALNUM + "-_"
_HEX = "0123456789abcdef"


def _random(alphabet: str, length: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


def _b64url(data: dict) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _jwt(payload: dict) -> str:
    header = _b64url({"alg": "HS256", "typ": "JWT"})
    return f"{header}.{_b64url(payload)}.{_random(_BASE64URL, 43)}"


def _pem_body(lines: int = 4) -> str:
    return "\n".join(_random(_BASE64, 64) for _ in range(lines))


@dataclass(frozen=True)
class CredentialFormat:
    """A credential's shape: a regular expression, a generator and a probe file.

    `generate` returns (text to embed, canary value); the canary is the part
    that must never be stored. `template` is the ordinary file's content, with
    ``{value}`` where the text goes. `confirm`, when set, must accept a match
    for it to count (a JWT is a Supabase service-role key only by its payload).
    """

    name: str
    pattern: re.Pattern[str]
    generate: Callable[[], tuple[str, str]]
    path: str
    template: str
    confirm: Callable[[str], bool] | None = None


def _token(prefix: str, alphabet: str, length: int, suffix: str = "") -> Callable:
    def generate() -> tuple[str, str]:
        value = prefix + _random(alphabet, length) + suffix
        return value, value

    return generate


def _private_key(begin: str, end: str) -> Callable:
    def generate() -> tuple[str, str]:
        body = _pem_body()
        return f"{begin}\n{body}\n{end}", body.splitlines()[0]

    return generate


def _putty_key() -> tuple[str, str]:
    public = _random(_BASE64, 68)
    private = _random(_BASE64, 64)
    text = (
        "PuTTY-User-Key-File-3: ssh-ed25519\n"
        "Encryption: none\n"
        "Comment: deploy\n"
        f"Public-Lines: 2\n{public[:64]}\n{public[64:]}\n"
        f"Private-Lines: 1\n{private}\n"
        f"Private-MAC: {_random(_HEX, 64)}"
    )
    return text, private


def _gcp_service_account() -> tuple[str, str]:
    key_id = _random(_HEX, 40)
    document = {
        "type": "service_account",
        "project_id": "probe-project",
        "private_key_id": key_id,
        "client_email": "indexer@probe-project.iam.gserviceaccount.com",
        "client_id": _random(string.digits, 21),
    }
    return json.dumps(document, indent=2), key_id


def _jwt_token(role: str) -> Callable:
    def generate() -> tuple[str, str]:
        token = _jwt(
            {
                "iss": "supabase",
                "ref": _random(string.ascii_lowercase, 20),
                "role": role,
                "iat": 1700000000,
                "exp": 2000000000,
            }
        )
        return token, token

    return generate


def _is_service_role_jwt(token: str) -> bool:
    payload = token.split(".")[1]
    try:
        claims = json.loads(
            base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        )
    except ValueError:
        return False
    return isinstance(claims, dict) and claims.get("role") == "service_role"


def _password_url() -> tuple[str, str]:
    password = _random(_ALNUM, 24)
    return f"postgresql://app:{password}@db.internal:5432/app", password


def _slack_webhook() -> tuple[str, str]:
    url = (
        "https://hooks.slack.com/services/T"
        + _random(string.ascii_uppercase + string.digits, 10)
        + "/B"
        + _random(string.ascii_uppercase + string.digits, 10)
        + "/"
        + _random(_ALNUM, 24)
    )
    return url, url


def _slack_token(prefix: str) -> Callable:
    def generate() -> tuple[str, str]:
        value = (
            f"{prefix}-{_random(string.digits, 12)}-{_random(string.digits, 13)}-"
            f"{_random(_ALNUM, 24)}"
        )
        return value, value

    return generate


def _slack_app_token() -> tuple[str, str]:
    value = (
        f"xapp-1-A{_random(string.ascii_uppercase + string.digits, 10)}-"
        f"{_random(string.digits, 13)}-{_random(_HEX, 64)}"
    )
    return value, value


def _openai(kind: str) -> Callable:
    def generate() -> tuple[str, str]:
        value = f"sk-{kind}-{_random(_BASE64URL, 58)}T3BlbkFJ{_random(_BASE64URL, 58)}"
        return value, value

    return generate


def _sendgrid() -> tuple[str, str]:
    value = f"SG.{_random(_BASE64URL, 22)}.{_random(_BASE64URL, 43)}"
    return value, value


_PY = '"""Settings for the {name} client."""\n\nCLIENT_SETTING = "{value}"\n'
_SH = '#!/bin/sh\n# Deploy helper.\nexport {keyword}="{value}"\n'
_DOC = "# Handover notes\n\nThe deploy user's key:\n\n```\n{value}\n```\n"


def _formats() -> tuple[CredentialFormat, ...]:
    def fmt(name, pattern, generate, path, template=_PY, flags=0, confirm=None):
        return CredentialFormat(
            name=name,
            pattern=re.compile(pattern, flags),
            generate=generate,
            path=path,
            template=template.replace("{name}", name),
            confirm=confirm,
        )

    upper32 = string.ascii_uppercase + "234567"
    return (
        fmt(
            "aws-access-key-id",
            r"\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16}\b",
            _token("AKIA", upper32, 16),
            "services/storage.py",
        ),
        # The AWS and Razorpay secrets are bare random text, found only by a
        # keyword nearby that the shell template sets.
        fmt(
            "aws-secret-access-key",
            r"aws.{0,20}?(?:secret|key).{0,20}?['\"=:\s]([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+])",
            _token("", _BASE64, 40),
            "deploy/upload.sh",
            _SH.replace("{keyword}", "AWS_SECRET_ACCESS_KEY"),
            re.IGNORECASE,
        ),
        fmt(
            "github-personal-access-token",
            r"\bghp_[A-Za-z0-9]{36}\b",
            _token("ghp_", _ALNUM, 36),
            "tools/release.py",
        ),
        fmt(
            "github-oauth-token",
            r"\bgho_[A-Za-z0-9]{36}\b",
            _token("gho_", _ALNUM, 36),
            "tools/sync_issues.py",
        ),
        fmt(
            "github-user-to-server-token",
            r"\bghu_[A-Za-z0-9]{36}\b",
            _token("ghu_", _ALNUM, 36),
            "tools/app_user.py",
        ),
        fmt(
            "github-server-to-server-token",
            r"\bghs_[A-Za-z0-9]{36}\b",
            _token("ghs_", _ALNUM, 36),
            "tools/app_install.py",
        ),
        fmt(
            "github-refresh-token",
            r"\bghr_[A-Za-z0-9]{36}\b",
            _token("ghr_", _ALNUM, 36),
            "tools/app_refresh.py",
        ),
        fmt(
            "github-fine-grained-token",
            r"\bgithub_pat_[A-Za-z0-9_]{82}\b",
            _token("github_pat_", _ALNUM + "_", 82),
            "tools/mirror.py",
        ),
        fmt(
            "slack-bot-token",
            r"\bxoxb-[0-9A-Za-z-]{10,}",
            _slack_token("xoxb"),
            "notify/bot.py",
        ),
        fmt(
            "slack-user-token",
            r"\bxoxp-[0-9A-Za-z-]{10,}",
            _slack_token("xoxp"),
            "notify/user.py",
        ),
        fmt(
            "slack-config-token",
            r"\bxoxe-[0-9A-Za-z-]{10,}",
            _slack_token("xoxe"),
            "notify/config_api.py",
        ),
        fmt(
            "slack-app-token",
            r"\bxapp-[0-9]+-[A-Z0-9]+-[0-9]+-[a-z0-9]+",
            _slack_app_token,
            "notify/socket_mode.py",
        ),
        fmt(
            "slack-webhook-url",
            r"https://hooks\.slack\.com/services/T[A-Z0-9]+/B[A-Z0-9]+/[A-Za-z0-9]+",
            _slack_webhook,
            "notify/alerts.py",
        ),
        fmt(
            "stripe-secret-key",
            r"\bsk_(?:live|test)_[A-Za-z0-9]{10,99}\b",
            _token("sk_live_", _ALNUM, 24),
            "billing/stripe_client.py",
        ),
        fmt(
            "stripe-restricted-key",
            r"\brk_(?:live|test)_[A-Za-z0-9]{10,99}\b",
            _token("rk_live_", _ALNUM, 24),
            "billing/reports.py",
        ),
        fmt(
            "razorpay-key-id",
            r"\brzp_(?:live|test)_[A-Za-z0-9]{14}\b",
            _token("rzp_live_", _ALNUM, 14),
            "billing/razorpay_client.py",
        ),
        fmt(
            "razorpay-key-secret",
            r"razorpay.{0,30}?secret.{0,10}?['\"=:\s]([A-Za-z0-9]{20,50})\b",
            _token("", _ALNUM, 24),
            "billing/checkout.sh",
            _SH.replace("{keyword}", "RAZORPAY_KEY_SECRET"),
            re.IGNORECASE,
        ),
        fmt(
            "google-api-key",
            r"\bAIza[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-])",
            _token("AIza", _BASE64URL, 35),
            "maps/geocode.py",
        ),
        fmt(
            "gcp-service-account",
            r"\"type\"\s*:\s*\"service_account\"",
            _gcp_service_account,
            "infra/gcp-project.json",
            "{value}\n",
        ),
        fmt(
            "rsa-private-key",
            r"-----BEGIN RSA PRIVATE KEY-----",
            _private_key(
                "-----BEGIN RSA PRIVATE KEY-----", "-----END RSA PRIVATE KEY-----"
            ),
            "docs/handover-rsa.md",
            _DOC,
        ),
        fmt(
            "ec-private-key",
            r"-----BEGIN EC PRIVATE KEY-----",
            _private_key(
                "-----BEGIN EC PRIVATE KEY-----", "-----END EC PRIVATE KEY-----"
            ),
            "docs/handover-ec.md",
            _DOC,
        ),
        fmt(
            "dsa-private-key",
            r"-----BEGIN DSA PRIVATE KEY-----",
            _private_key(
                "-----BEGIN DSA PRIVATE KEY-----", "-----END DSA PRIVATE KEY-----"
            ),
            "docs/handover-dsa.md",
            _DOC,
        ),
        fmt(
            "openssh-private-key",
            r"-----BEGIN OPENSSH PRIVATE KEY-----",
            _private_key(
                "-----BEGIN OPENSSH PRIVATE KEY-----",
                "-----END OPENSSH PRIVATE KEY-----",
            ),
            "docs/handover-ssh.md",
            _DOC,
        ),
        fmt(
            "pkcs8-private-key",
            r"-----BEGIN (?:ENCRYPTED )?PRIVATE KEY-----",
            _private_key("-----BEGIN PRIVATE KEY-----", "-----END PRIVATE KEY-----"),
            "docs/handover-pkcs8.md",
            _DOC,
        ),
        fmt(
            "pgp-private-key",
            r"-----BEGIN PGP PRIVATE KEY BLOCK-----",
            _private_key(
                "-----BEGIN PGP PRIVATE KEY BLOCK-----",
                "-----END PGP PRIVATE KEY BLOCK-----",
            ),
            "docs/handover-pgp.md",
            _DOC,
        ),
        fmt(
            "putty-private-key",
            r"PuTTY-User-Key-File-[0-9]+:",
            _putty_key,
            "docs/handover-putty.md",
            _DOC,
        ),
        fmt(
            "jwt",
            r"\bey[A-Za-z0-9_-]{10,}\.ey[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}",
            _jwt_token("authenticated"),
            "web/session.py",
        ),
        fmt(
            "supabase-service-role-jwt",
            r"\bey[A-Za-z0-9_-]{10,}\.ey[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}",
            _jwt_token("service_role"),
            "jobs/admin_client.py",
            confirm=_is_service_role_jwt,
        ),
        fmt(
            "supabase-secret-key",
            r"\bsb_secret_[A-Za-z0-9_-]{20,}",
            _token("sb_secret_", _BASE64URL, 31),
            "jobs/storage_admin.py",
        ),
        fmt(
            "supabase-access-token",
            r"\bsbp_[a-z0-9]{40}\b",
            _token("sbp_", string.ascii_lowercase + string.digits, 40),
            "tools/supabase_cli.py",
        ),
        fmt(
            "openai-project-key",
            r"\bsk-proj-[A-Za-z0-9_-]{20,}T3BlbkFJ[A-Za-z0-9_-]{20,}",
            _openai("proj"),
            "ai/completions.py",
        ),
        fmt(
            "openai-service-account-key",
            r"\bsk-svcacct-[A-Za-z0-9_-]{20,}T3BlbkFJ[A-Za-z0-9_-]{20,}",
            _openai("svcacct"),
            "ai/batch.py",
        ),
        fmt(
            "openai-admin-key",
            r"\bsk-admin-[A-Za-z0-9_-]{20,}T3BlbkFJ[A-Za-z0-9_-]{20,}",
            _openai("admin"),
            "ai/usage_report.py",
        ),
        fmt(
            "anthropic-api-key",
            r"\bsk-ant-api03-[A-Za-z0-9_-]{93}AA\b",
            _token("sk-ant-api03-", _BASE64URL, 93, "AA"),
            "ai/summarise.py",
        ),
        fmt(
            "twilio-api-key",
            r"\bSK[0-9a-fA-F]{32}\b",
            _token("SK", _HEX, 32),
            "notify/sms.py",
        ),
        fmt(
            "twilio-account-sid",
            r"\bAC[0-9a-fA-F]{32}\b",
            _token("AC", _HEX, 32),
            "notify/voice.py",
        ),
        fmt(
            "sendgrid-api-key",
            r"\bSG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])",
            _sendgrid,
            "notify/email.py",
        ),
        fmt(
            "npm-access-token",
            r"\bnpm_[A-Za-z0-9]{36}\b",
            _token("npm_", _ALNUM, 36),
            "web/publish.py",
        ),
        fmt(
            "pypi-upload-token",
            r"pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,}",
            _token("pypi-AgEIcHlwaS5vcmc", _BASE64URL, 60),
            "tools/publish.py",
        ),
        fmt(
            "gitlab-personal-access-token",
            r"\bglpat-[A-Za-z0-9_-]{20}(?![A-Za-z0-9_-])",
            _token("glpat-", _BASE64URL, 20),
            "tools/gitlab_mirror.py",
        ),
        fmt(
            "hugging-face-token",
            r"\bhf_[A-Za-z]{34}\b",
            _token("hf_", string.ascii_letters, 34),
            "ai/embeddings.py",
        ),
        fmt(
            "linear-api-key",
            r"\blin_api_[A-Za-z0-9]{40}\b",
            _token("lin_api_", _ALNUM, 40),
            "tools/linear_sync.py",
        ),
        fmt(
            "password-in-url",
            r"\b[a-z][a-z0-9+.-]*://[^\s:/@]+:[^\s:/@]+@[^\s/]+",
            _password_url,
            "services/database.py",
        ),
    )


CREDENTIAL_FORMATS: tuple[CredentialFormat, ...] = _formats()

# Ordinary files: their canaries must be stored, or the probe proved nothing.
_ORDINARY_FILES: tuple[tuple[str, str], ...] = (
    ("README.md", "# Probe service\n\nReference: {canary}\n"),
    ("src/app.py", 'def main() -> str:\n    return "{canary}"\n'),
    ("src/routes.py", "# Route table, build {canary}\nROUTES = []\n"),
    ("src/models/ticket.py", 'class Ticket:\n    marker = "{canary}"\n'),
    ("web/index.ts", 'export const build = "{canary}";\n'),
    ("web/components/Button.tsx", "// {canary}\nexport const Button = () => null;\n"),
    ("config/settings.yaml", "service:\n  name: probe\n  build: {canary}\n"),
    ("docs/architecture.md", "# Architecture\n\nThe build is {canary}.\n"),
    ("db/schema.sql", "-- {canary}\ncreate table items (id int);\n"),
    ("package.json", '{{"name": "probe", "description": "{canary}"}}\n'),
    ("Makefile", "# {canary}\nall:\n\t@echo build\n"),
)


@dataclass(frozen=True)
class ProbeFile:
    """One file of the probe repository and what it must prove.

    `kind` is "secret-file" (excluded by name), "credential" (excluded by
    content) or "ordinary" (must be indexed). `pattern` is the secret file
    pattern or the credential format it stands for.
    """

    path: str
    kind: str
    pattern: str
    canary: Canary


@dataclass(frozen=True)
class ProbeRepository:
    """A generated git repository and the files planted in it."""

    path: Path
    commit: str
    files: tuple[ProbeFile, ...]

    def of_kind(self, kind: str) -> list[ProbeFile]:
        return [f for f in self.files if f.kind == kind]


def secret_file_pattern(path: str) -> str | None:
    """Return the secret file pattern a repository-relative path matches, or None."""
    posix = PurePosixPath(path.replace(os.sep, "/"))
    for pattern in SECRET_FILE_PATTERNS:
        if "/" in pattern:
            if str(posix) == pattern or str(posix).endswith("/" + pattern):
                return pattern
        elif fnmatch.fnmatchcase(posix.name, pattern):
            return pattern
    return None


def find_credentials(text: str) -> list[tuple[str, str]]:
    """Return (format name, matched text) for every credential format in `text`."""
    found = []
    for credential in CREDENTIAL_FORMATS:
        for match in credential.pattern.finditer(text):
            if credential.confirm is None or credential.confirm(match.group()):
                found.append((credential.name, match.group()))
    return found


def _secret_file_content(path: str, canary: Canary) -> bytes:
    if path.endswith(_BINARY_SUFFIXES):
        return b"\x30\x82\x05\x00ASSAY-PROBE\x00" + canary.value.encode() + b"\x00\xff"
    return f"# probe file\nPROBE_SETTING={canary.value}\n".encode()


def _write(root: Path, relative: str, content: bytes) -> None:
    target = root / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(content)


def _plant_secret_files(root: Path) -> list[ProbeFile]:
    planted = []
    for relative, pattern in _SECRET_FILES:
        canary = new_canary("secret-file", relative, prefix="assay-secret-", length=32)
        _write(root, relative, _secret_file_content(relative, canary))
        planted.append(ProbeFile(relative, "secret-file", pattern, canary))
    return planted


def _plant_credentials(root: Path) -> list[ProbeFile]:
    planted = []
    for credential in CREDENTIAL_FORMATS:
        text, value = credential.generate()
        canary = Canary(value=value, kind="credential", label=credential.name)
        register(canary)
        content = credential.template.replace("{value}", text)
        _write(root, credential.path, content.encode())
        planted.append(
            ProbeFile(credential.path, "credential", credential.name, canary)
        )
    return planted


def _plant_ordinary(root: Path) -> list[ProbeFile]:
    planted = []
    for relative, template in _ORDINARY_FILES:
        canary = new_canary(
            "ordinary-file", relative, prefix="assay-ordinary-", length=32
        )
        content = template.replace("{{", "{").replace("}}", "}")
        _write(root, relative, content.replace("{canary}", canary.value).encode())
        planted.append(ProbeFile(relative, "ordinary", "ordinary", canary))
    return planted


def _git(root: Path, *args: str) -> str:
    command = [
        "git",
        "-c",
        "user.name=Assay",
        "-c",
        "user.email=assay@localhost",
        "-c",
        "commit.gpgsign=false",
        "-c",
        "init.defaultBranch=main",
        *args,
    ]
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    try:
        done = subprocess.run(
            command,
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except FileNotFoundError:
        raise TargetError(
            "git not found: the indexer probe builds a real git repository. "
            "Install git and run again"
        ) from None
    if done.returncode != 0:
        raise TargetError(
            f"`git {' '.join(args)}` failed in {root} with exit status "
            f"{done.returncode}: {done.stderr.strip()}"
        )
    return done.stdout.strip()


def build_probe_repository(root: Path) -> ProbeRepository:
    """Write the probe files into the empty folder `root` and commit them with git."""
    root.mkdir(parents=True, exist_ok=True)
    files = _plant_secret_files(root) + _plant_credentials(root) + _plant_ordinary(root)
    _git(root, "init", "-q")
    _git(root, "add", ".")
    _git(root, "commit", "-q", "-m", "Probe repository for the secret-exclusion check")
    commit = _git(root, "rev-parse", "HEAD")
    logger.info("built probe repository %s with %d files", root, len(files))
    return ProbeRepository(path=root, commit=commit, files=tuple(files))
