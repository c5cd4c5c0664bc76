"""Repository indexer: stores a repository's source files for search, never its secrets.

Run as a background job::

    python -m acme.indexer --repo PATH --database-url URL --organization ID

It reads the files git tracks at HEAD's working tree and stores each in
``public.indexed_files`` for the organization, except:

- files whose name marks them as secret (``.env`` and ``.env.*``, keys and
  certificates, credential stores such as ``.pypirc`` or ``secrets.yml``);
- files whose content contains a known credential format (cloud, payment and
  API keys, tokens, private keys, passwords in URLs);
- binary files, files that are not UTF-8 and files over ``MAX_BYTES``.

Only paths and counts are logged, never file content. ``ACME_FLAW`` switches
on one deliberate exclusion bug for Assay's own tests (see ``INDEXER_FLAWS``).
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import logging
import os
import re
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from starlette.routing import BaseRoute

from acme.db import Database

logger = logging.getLogger("acme.indexer")

MAX_BYTES = 1_000_000

SECRET_NAMES = (
    ".env",
    ".env.*",
    "*.pem",
    "*.key",
    "id_rsa",
    "id_dsa",
    "id_ecdsa",
    "id_ed25519",
    "*_rsa",
    "*_dsa",
    "*_ecdsa",
    "*_ed25519",
    "*.p12",
    "*.pfx",
    "*.jks",
    "*.keystore",
    "*.kdbx",
    "*.ppk",
    ".npmrc",
    ".pypirc",
    ".netrc",
    ".pgpass",
    ".git-credentials",
    ".htpasswd",
    # .aws/credentials, .docker/credentials and the like.
    "credentials",
    "credentials.json",
    "*service-account*.json",
    "*service_account*.json",
    "secrets.yml",
    "secrets.yaml",
    "secret.yml",
    "secret.yaml",
    "*.tfvars",
    "*.tfstate",
)

# Credential formats, after gitleaks' default rules.
CREDENTIAL_PATTERNS: dict[str, str] = {
    "aws-access-key-id": r"\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16}\b",
    "aws-secret-access-key": (
        r"(?i)aws.{0,20}?(?:secret|key).{0,20}?['\"=:\s][A-Za-z0-9/+]{40}(?![A-Za-z0-9/+])"
    ),
    "github-token": r"\bgh[pousr]_[A-Za-z0-9]{36}\b",
    "github-fine-grained-token": r"\bgithub_pat_\w{82}\b",
    "slack-token": r"\bxox[abposre]-[0-9A-Za-z-]{10,}",
    "slack-app-token": r"\bxapp-\d+-[A-Z0-9]+-\d+-[a-z0-9]+",
    "slack-webhook": r"hooks\.slack\.com/(?:services|workflows)/[A-Za-z0-9+/]{20,}",
    "stripe-key": r"\b[rs]k_(?:live|test)_[A-Za-z0-9]{10,99}\b",
    "razorpay-key-id": r"\brzp_(?:live|test)_[A-Za-z0-9]{14}\b",
    "razorpay-key-secret": r"(?i)razorpay.{0,30}?secret.{0,10}?['\"=:\s][A-Za-z0-9]{20,50}\b",
    "google-api-key": r"\bAIza[\w-]{35}(?![\w-])",
    "gcp-service-account": r"\"type\"\s*:\s*\"service_account\"",
    "private-key": r"-----BEGIN (?:[A-Z]+ )*PRIVATE KEY(?: BLOCK)?-----",
    "putty-private-key": r"PuTTY-User-Key-File-\d+:",
    "jwt": r"\bey[\w-]{10,}\.ey[\w-]{10,}\.[\w-]{10,}",
    "supabase-secret-key": r"\bsb_secret_[\w-]{20,}",
    "supabase-access-token": r"\bsbp_[a-z0-9]{40}\b",
    "openai-key": r"\bsk-(?:(?:proj|svcacct|admin)-)?[\w-]{20,}T3BlbkFJ[\w-]{20,}",
    "anthropic-key": r"\bsk-ant-(?:api|admin)\d\d-[\w-]{80,}",
    "twilio-key": r"\b(?:SK|AC)[0-9a-fA-F]{32}\b",
    "sendgrid-key": r"\bSG\.[\w-]{22}\.[\w-]{43}(?![\w-])",
    "npm-token": r"\bnpm_[A-Za-z0-9]{36}\b",
    "pypi-token": r"pypi-AgEIcHlwaS5vcmc[\w-]{50,}",
    "gitlab-token": r"\bglpat-[\w-]{20}(?![\w-])",
    "hugging-face-token": r"\bhf_[A-Za-z]{34}\b",
    "linear-api-key": r"\blin_api_[A-Za-z0-9]{40}\b",
    "password-in-url": r"\b[a-z][a-z0-9+.-]*://[^\s:/@]+:[^\s:/@]+@[^\s/]+",
}

# Deliberate exclusion bugs for Assay's own tests, chosen with ACME_FLAW.
INDEXER_FLAWS = (
    "indexer-env-files",  # only `.env` itself is excluded, not `.env.*`
    "indexer-secrets-yml",  # secrets.yml is not recognised as a secret file
    "indexer-github-tokens",  # GitHub tokens are not recognised in content
    "indexer-skip-all",  # every file is skipped, so nothing is indexed
)


@dataclass(frozen=True)
class Rules:
    """The secret file names and credential formats the indexer excludes."""

    names: tuple[str, ...]
    patterns: dict[str, re.Pattern[str]]
    skip_all: bool = False


@dataclass
class IndexReport:
    """The count of files one run indexed, and of those it skipped by reason."""

    indexed: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


def rules(flaw: str = "") -> Rules:
    """Return the exclusion rules, with one deliberate bug when `flaw` names one."""
    names = SECRET_NAMES
    patterns = dict(CREDENTIAL_PATTERNS)
    if flaw == "indexer-env-files":
        names = tuple(n for n in names if n != ".env.*")
    elif flaw == "indexer-secrets-yml":
        names = tuple(n for n in names if n != "secrets.yml")
    elif flaw == "indexer-github-tokens":
        patterns = {k: v for k, v in patterns.items() if not k.startswith("github")}
    compiled = {name: re.compile(pattern) for name, pattern in patterns.items()}
    return Rules(names=names, patterns=compiled, skip_all=flaw == "indexer-skip-all")


def secret_name(path: str, names: tuple[str, ...]) -> str | None:
    """Return the secret-name pattern `path` matches, or None."""
    posix = PurePosixPath(path)
    for pattern in names:
        if fnmatch.fnmatchcase(posix.name, pattern):
            return pattern
    return None


def credential_format(text: str, patterns: dict[str, re.Pattern[str]]) -> str | None:
    """Return the first credential format found in `text`, or None."""
    for name, pattern in patterns.items():
        if pattern.search(text):
            return name
    return None


def tracked_files(repo: Path) -> list[str]:
    """Return the paths git tracks in `repo`, relative to it."""
    done = subprocess.run(
        ["git", "-C", str(repo), "ls-files", "-z"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(
            f"acme.indexer: {repo} is not a git repository: "
            f"{done.stderr.decode(errors='replace').strip()}"
        )
    return [p for p in done.stdout.decode().split("\0") if p]


def readable_text(path: Path) -> str | None:
    """Return the file's text, or None for a binary, non-UTF-8 or too large file."""
    if path.stat().st_size > MAX_BYTES:
        return None
    data = path.read_bytes()
    if b"\0" in data[:8192]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def select_files(
    repo: Path, rule_set: Rules, report: IndexReport
) -> list[tuple[str, str]]:
    """Return (path, text) of every file that may be indexed."""
    selected = []
    for relative in tracked_files(repo):
        if rule_set.skip_all:
            report.skip("skipped")
            continue
        name = secret_name(relative, rule_set.names)
        if name is not None:
            logger.info("skipped %s: secret file name (%s)", relative, name)
            report.skip("secret file name")
            continue
        path = repo / relative
        if not path.is_file():
            continue
        text = readable_text(path)
        if text is None:
            report.skip("binary or too large")
            continue
        found = credential_format(text, rule_set.patterns)
        if found is not None:
            logger.info("skipped %s: contains a credential (%s)", relative, found)
            report.skip("credential in content")
            continue
        selected.append((relative, text))
    return selected


def store(db: Database, organization_id: str, files: list[tuple[str, str]]) -> None:
    # service-role: the indexer is a background job with no user session, and
    # it writes only rows of the organization named on its command line.
    with db.as_service() as cur:
        for relative, text in files:
            cur.execute(
                """
                insert into public.indexed_files
                    (organization_id, path, sha256, content)
                values (%s, %s, %s, %s)
                on conflict (organization_id, path) do update
                    set sha256 = excluded.sha256,
                        content = excluded.content,
                        indexed_at = now()
                """,
                (
                    organization_id,
                    relative,
                    hashlib.sha256(text.encode()).hexdigest(),
                    text,
                ),
            )


def index_repository(
    repo: Path, database_url: str, organization_id: str, *, flaw: str = ""
) -> IndexReport:
    """Index `repo` for the organization and return what was indexed and skipped."""
    report = IndexReport()
    files = select_files(repo, rules(flaw), report)
    store(Database(database_url), organization_id, files)
    report.indexed = len(files)
    logger.info(
        "indexed %d files of %s for organization %s; skipped %s",
        report.indexed,
        repo,
        organization_id,
        report.skipped or "none",
    )
    return report


def routes() -> list[BaseRoute]:
    """No HTTP routes: indexing runs as a job, never on a path a request names."""
    return []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m acme.indexer")
    parser.add_argument("--repo", required=True, help="folder of the git repository")
    parser.add_argument("--database-url", required=True, help="PostgreSQL URL")
    parser.add_argument("--organization", required=True, help="organization id (UUID)")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )

    try:
        organization_id = str(uuid.UUID(args.organization))
    except ValueError:
        print(
            f"acme.indexer: --organization {args.organization!r} is not a UUID",
            file=sys.stderr,
        )
        return 2
    repo = Path(args.repo)
    if not repo.is_dir():
        print(f"acme.indexer: --repo {repo} is not a folder", file=sys.stderr)
        return 2
    index_repository(
        repo, args.database_url, organization_id, flaw=os.environ.get("ACME_FLAW", "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
