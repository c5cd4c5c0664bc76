"""Seeded violations of DM-2, DM-3, TI-6, waivers and attestations on acme.

Each case writes an assay.yaml for a variant of acme: an ``ACME_FLAW`` for the
indexer, an extra migration, an extra source file, a waivers file or an old
collection date. It then runs ``assay run --controls ...`` as a subprocess
against a shared local PostgreSQL. The runs are started together, because most of
their time is spent starting Python and waiting on the database.
"""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from assay_testing import (
    ACME,
    TENANCY,
    AssayResult,
    copy_acme_migrations,
    run_assay,
    write_config,
)

DATA_CONTROLS = "DM-2,DM-3"
ATTESTED_CONTROLS = "OP-1,OP-2,OP-3"
CODE_CONTROLS = f"TI-6,{ATTESTED_CONTROLS}"
ORGANIZATION = "00000000-0000-4000-8000-0000000000aa"

CARD_IN_NOTES = f"""\
alter table public.tickets add column notes text;
insert into public.organizations (id, name) values ('{ORGANIZATION}', 'Seeded');
insert into public.tickets (organization_id, provider, external_id, subject, notes)
values ('{ORGANIZATION}', 'zendesk', '1', 'Billing question',
        'Customer read out 4000 0566 5566 5556 on the call');
"""

CVV_COLUMN = "alter table public.integrations add column cvv text;\n"

UNJUSTIFIED_CALL = '''\
"""Monthly usage report."""


def monthly_usage(db):
    with db.as_service() as cur:
        cur.execute("select organization_id, count(*) from public.tickets group by 1")
        return cur.fetchall()
'''


def waiver(control: str, scope: str, expires: date) -> str:
    return (
        "waivers:\n"
        f"  - control: {control}\n"
        f"    scope: {scope}\n"
        "    reason: Legacy column, dropped with the billing rewrite\n"
        "    approver: security@acme.example\n"
        f"    expires: {expires.isoformat()}\n"
    )


@dataclass(frozen=True)
class Case:
    controls: str
    flaw: str = ""
    extra_sql: str | None = None
    extra_source: str | None = None
    waivers: str | None = None
    collected_days_ago: dict[str, int] = field(default_factory=dict)


TODAY = date.today()

CASES = {
    "acme": Case(f"{DATA_CONTROLS},{CODE_CONTROLS}"),
    "env-local indexed": Case(DATA_CONTROLS, flaw="indexer-env-files"),
    "secrets-yml indexed": Case(DATA_CONTROLS, flaw="indexer-secrets-yml"),
    "github token indexed": Case(DATA_CONTROLS, flaw="indexer-github-tokens"),
    "indexer skips everything": Case(DATA_CONTROLS, flaw="indexer-skip-all"),
    "card number in notes": Case(DATA_CONTROLS, extra_sql=CARD_IN_NOTES),
    "cvv column": Case(DATA_CONTROLS, extra_sql=CVV_COLUMN),
    "cvv column waived": Case(
        "DM-3",
        extra_sql=CVV_COLUMN,
        waivers=waiver("DM-3", "{table: public.integrations}", TODAY + timedelta(30)),
    ),
    "expired waiver": Case(
        DATA_CONTROLS,
        waivers=waiver("DM-3", "{table: public.tickets}", TODAY - timedelta(1)),
    ),
    "unjustified service-role call": Case(CODE_CONTROLS, extra_source=UNJUSTIFIED_CALL),
    "stale attestation": Case(ATTESTED_CONTROLS, collected_days_ago={"OP-2": 91}),
}

ATTESTED = {
    "OP-1": ("op-1-region-and-encryption.md", 365),
    "OP-2": ("op-2-backups.md", 90),
    "OP-3": ("op-3-subprocessors.md", 180),
}


def _sections(folder: Path, case: Case, database_url: str) -> dict[str, Any]:
    migrations = copy_acme_migrations(folder, extra_sql=case.extra_sql)
    package = ACME / "acme"
    if case.extra_source is not None:
        package = folder / "acme"
        shutil.copytree(
            ACME / "acme", package, ignore=shutil.ignore_patterns("__pycache__")
        )
        (package / "reports.py").write_text(case.extra_source)
    attested = [
        {
            "control": control,
            "file": str(ACME / "evidence" / name),
            "owner": "platform@acme.example",
            "max_age_days": max_age,
            "collected": (
                TODAY - timedelta(days=case.collected_days_ago.get(control, 0))
            ).isoformat(),
        }
        for control, (name, max_age) in ATTESTED.items()
    ]
    return {
        "database": {"provider": "url", "url": database_url, "flavor": "supabase"},
        "migrations": {"path": str(migrations)},
        "tenancy": TENANCY,
        "indexer": {
            "command": (
                "{python} -m acme.indexer --repo {repo} --database-url {database_url} "
                "--organization {organization_id}"
            ),
            "cwd": str(ACME),
            "env": {"ACME_FLAW": case.flaw},
            "read_sql": (
                "select path, content from public.indexed_files "
                "where organization_id = {organization_id}"
            ),
        },
        "service_role": {"paths": [str(package)], "patterns": [r"\.as_service\("]},
        "attested": attested,
    }


def _run(folder: Path, case: Case, database_url: str) -> AssayResult:
    folder.mkdir()
    write_config(folder, _sections(folder, case, database_url))
    if case.waivers is not None:
        (folder / "waivers.yaml").write_text(case.waivers)
    return run_assay(
        "run", "--controls", case.controls, cwd=folder, report_dir=folder / "out"
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory, shared_postgres_url) -> dict[str, AssayResult]:
    root = tmp_path_factory.mktemp("seeded-data-handling")
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {
            name: pool.submit(_run, root / f"case{index}", case, shared_postgres_url)
            for index, (name, case) in enumerate(CASES.items())
        }
        return {name: future.result() for name, future in futures.items()}


def statuses(result: AssayResult) -> dict[str, str]:
    assert result.evidence is not None, result.stderr
    return result.statuses()


def leak_findings(result: AssayResult) -> dict[str, dict[str, Any]]:
    return {f["file"]: f for f in result.findings("DM-2")}


def test_acme_keeps_every_claim(runs):
    result = runs["acme"]
    observed = result.control("DM-2")["observations"][
        "test_secrets_excluded_from_index"
    ]
    inventory = result.control("TI-6")["observations"][
        "test_service_role_uses_justified"
    ]["inventory"]

    assert statuses(result) == {
        "DM-2": "passed",
        "DM-3": "passed",
        "TI-6": "passed",
        "OP-1": "attested",
        "OP-2": "attested",
        "OP-3": "attested",
    }
    assert result.status == 0, result.stderr
    assert observed["probe"]["ordinary files indexed"] == 11
    assert observed["probe"]["secret files excluded"] == 27
    assert observed["probe"]["credential files excluded"] == 43
    assert inventory
    assert all(use["justification"] for use in inventory)


def test_env_local_indexed_fails_dm2(runs):
    result = runs["env-local indexed"]
    findings = leak_findings(result)

    assert statuses(result) == {"DM-2": "failed", "DM-3": "passed"}
    assert result.status == 1
    assert findings[".env.local"]["rule"] == "secret-file-indexed"
    assert findings[".env.local"]["details"]["pattern"] == ".env.*"
    assert "table public.indexed_files.content" in findings[".env.local"]["message"]
    assert ".env" not in findings


def test_secrets_yml_indexed_fails_dm2(runs):
    result = runs["secrets-yml indexed"]

    assert statuses(result) == {"DM-2": "failed", "DM-3": "passed"}
    assert set(leak_findings(result)) == {"secrets.yml", "config/secrets.yml"}


def test_github_token_indexed_fails_dm2(runs):
    result = runs["github token indexed"]
    findings = leak_findings(result)

    assert statuses(result) == {"DM-2": "failed", "DM-3": "passed"}
    assert findings["tools/release.py"]["rule"] == "credential-indexed"
    assert findings["tools/release.py"]["details"]["pattern"] == (
        "github-personal-access-token"
    )
    assert (
        "github-personal-access-token credential"
        in findings["tools/release.py"]["message"]
    )
    assert len(findings) == 6


def test_indexer_skipping_everything_is_error(runs):
    result = runs["indexer skips everything"]
    undecided = result.findings("DM-2", level="undecided")

    assert statuses(result) == {"DM-2": "error", "DM-3": "passed"}
    assert result.status == 1
    assert len(undecided) == 11
    assert {f["rule"] for f in undecided} == {"ordinary-file-not-indexed"}
    assert "src/app.py" in {f["file"] for f in undecided}


def test_card_number_in_notes_fails_dm3(runs):
    result = runs["card number in notes"]
    (finding,) = result.findings("DM-3")
    evidence_text = json.dumps(result.evidence)

    assert statuses(result) == {"DM-2": "passed", "DM-3": "failed"}
    assert finding["rule"] == "card-number-stored"
    assert finding["table"] == "public.tickets"
    assert finding["details"]["column"] == "notes"
    assert "400005******5556" in finding["message"]
    assert "4000056655665556" not in evidence_text
    assert "4000 0566 5566 5556" not in evidence_text


def test_cvv_column_fails_dm3(runs):
    result = runs["cvv column"]
    (finding,) = result.findings("DM-3")

    assert statuses(result) == {"DM-2": "passed", "DM-3": "failed"}
    assert finding["rule"] == "card-data-column"
    assert finding["table"] == "public.integrations"
    assert finding["details"]["column"] == "cvv"


def test_waived_cvv_column_stays_reported(runs):
    result = runs["cvv column waived"]
    (finding,) = result.control("DM-3")["findings"]

    assert statuses(result) == {"DM-3": "waived"}
    assert result.status == 0, result.stderr
    assert finding["waived"] is True
    assert finding["details"]["column"] == "cvv"
    assert result.evidence["run"]["waivers"][0]["status"] == "applied"


def test_expired_waiver_fails_its_control(runs):
    result = runs["expired waiver"]
    (finding,) = result.findings("DM-3")

    assert statuses(result) == {"DM-2": "passed", "DM-3": "failed"}
    assert result.status == 1
    assert finding["rule"] == "waiver-expired"
    assert (finding["file"], finding["line"]) == ("waivers.yaml", 2)


def ti6_locations(result: AssayResult) -> set[tuple[str, int]]:
    return {(Path(f["file"]).name, f["line"]) for f in result.findings("TI-6")}


def test_unjustified_call_fails_ti6(runs):
    result = runs["unjustified service-role call"]
    added = ti6_locations(result) - ti6_locations(runs["acme"])

    assert statuses(result) == {
        "TI-6": "failed",
        "OP-1": "attested",
        "OP-2": "attested",
        "OP-3": "attested",
    }
    assert added == {("reports.py", 5)}


def test_stale_attestation_expires_op2(runs):
    result = runs["stale attestation"]
    observed = result.control("OP-2")["observations"]["test_backups_attested"]

    assert statuses(result) == {
        "OP-1": "attested",
        "OP-2": "expired",
        "OP-3": "attested",
    }
    assert result.status == 1
    assert observed["attestation"]["age_days"] == 91
    assert observed["attestation"]["sha256"]
    assert "maximum age is 90 days" in result.control("OP-2")["reasons"][0]
