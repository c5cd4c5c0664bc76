"""`assay lint`: static findings in text, JSON and GitHub annotation form."""

from __future__ import annotations

import json

from assay_testing import copy_acme_migrations, run_assay, tenancy_config

TAUTOLOGY = (
    "drop policy tickets_select on public.tickets;\n"
    "create policy tickets_select on public.tickets for select to authenticated\n"
    "    using (organization_id = organization_id);\n"
)
VIOLATION = "supabase/migrations/20990101000000_seeded_violation.sql"


def test_lint_passes_acme(tmp_path):
    copy_acme_migrations(tmp_path)
    config = tenancy_config(tmp_path)

    result = run_assay("lint", "--config", str(config), cwd=tmp_path)

    assert result.status == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("0 blocking finding(s), 0 other")


def test_lint_json_names_file_line_and_rule(tmp_path):
    copy_acme_migrations(tmp_path, extra_sql=TAUTOLOGY)
    config = tenancy_config(tmp_path)

    result = run_assay("lint", "--config", str(config), "--format", "json", cwd=tmp_path)

    assert result.status == 1
    findings = json.loads(result.stdout)["findings"]
    assert {
        "control": "TI-2",
        "rule": "policy-always-true",
        "severity": "error",
        "file": VIOLATION,
        "line": 2,
        "table": "public.tickets",
    }.items() <= findings[0].items()
    assert "organization_id = organization_id" in findings[0]["message"]


def test_lint_github_annotations(tmp_path):
    copy_acme_migrations(tmp_path, extra_sql=TAUTOLOGY)
    config = tenancy_config(tmp_path)

    result = run_assay(
        "lint", "--config", str(config), "--format", "github", cwd=tmp_path
    )

    assert result.status == 1
    first = result.stdout.splitlines()[0]
    assert first.startswith(
        f"::error file={VIOLATION},line=2,title=TI-2 policy-always-true::"
    )


def test_lint_reuses_parse_cache(tmp_path):
    copy_acme_migrations(tmp_path)
    config = tenancy_config(tmp_path)

    run_assay("lint", "--config", str(config), cwd=tmp_path)
    cached = sorted((tmp_path / ".assay-cache" / "migrations").glob("*.json"))
    again = run_assay("lint", "--config", str(config), cwd=tmp_path)

    assert len(cached) == len(list((tmp_path / "supabase" / "migrations").glob("*.sql")))
    assert again.status == 0


def test_lint_unparseable_statement_names_line(tmp_path):
    copy_acme_migrations(tmp_path, extra_sql="select 1;\ncreate policy on;\n")
    config = tenancy_config(tmp_path)

    result = run_assay("lint", "--config", str(config), cwd=tmp_path)

    assert result.status == 2
    assert "20990101000000_seeded_violation.sql:2" in result.stderr
    assert "Traceback" not in result.stderr
