"""Seeded tenant-isolation violations: each fails exactly the controls that own it.

Every case copies acme's migrations, adds or patches one migration, and runs
`assay run` as a subprocess against a shared local PostgreSQL. The failing
set is compared exactly, and the finding must point at the migration line.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from assay_testing import copy_acme_migrations, run_assay, tenancy_config

TI_CONTROLS = "TI-1,TI-2,TI-3,TI-4,TI-5"
VIOLATION_FILE = "20990101000000_seeded_violation.sql"


@dataclass(frozen=True)
class Violation:
    sql: str
    fails: frozenset[str]
    rule: str
    line: int | None = 1
    own_cluster: bool = False
    extra_files: dict[str, str] = field(default_factory=dict)


VIOLATIONS = {
    "missing tenant column": Violation(
        "create table public.notes (\n"
        "    id uuid primary key default gen_random_uuid(),\n"
        "    created_by uuid not null references auth.users (id),\n"
        "    body text not null\n"
        ");\n"
        "alter table public.notes enable row level security;\n"
        "create policy notes_all on public.notes for all to authenticated\n"
        "    using (created_by = (select auth.uid()));\n",
        frozenset({"TI-1"}),
        "tenant-column-missing",
    ),
    "signed-in user reads all": Violation(
        "create policy tickets_read_all on public.tickets\n"
        "    for select to authenticated using (true);\n",
        frozenset({"TI-2", "TI-4"}),
        "policy-always-true",
    ),
    "tautology predicate": Violation(
        "drop policy tickets_select on public.tickets;\n"
        "create policy tickets_select on public.tickets for select to authenticated\n"
        "    using (organization_id = organization_id);\n",
        frozenset({"TI-2", "TI-4"}),
        "policy-always-true",
        line=2,
    ),
    "insert checks only sign-in": Violation(
        "drop policy tickets_insert on public.tickets;\n"
        "create policy tickets_insert on public.tickets for insert to authenticated\n"
        "    with check ((select auth.uid()) is not null);\n",
        frozenset({"TI-2", "TI-4"}),
        "policy-not-tenant-scoped",
        line=2,
    ),
    "update with check true": Violation(
        "drop policy tickets_update on public.tickets;\n"
        "create policy tickets_update on public.tickets for update to authenticated\n"
        "    using ((select private.is_member(organization_id))) with check (true);\n",
        frozenset({"TI-2", "TI-4"}),
        "policy-always-true",
        line=2,
    ),
    "trusts user metadata": Violation(
        "create policy tickets_by_metadata on public.tickets for select\n"
        "    to authenticated using (organization_id =\n"
        "    ((select auth.jwt()) -> 'user_metadata' ->> 'organization_id')::uuid);\n",
        frozenset({"TI-2"}),
        "policy-trusts-user-metadata",
    ),
    "anon reads through is null or": Violation(
        "create policy tickets_public on public.tickets for select\n"
        "    using ((select auth.uid()) is null\n"
        "           or (select private.is_member(organization_id)));\n",
        frozenset({"TI-2", "TI-4"}),
        "policy-not-tenant-scoped",
    ),
    "rls disabled by a later migration": Violation(
        "alter table public.integrations disable row level security;\n",
        frozenset({"TI-2", "TI-4"}),
        "rls-disabled",
    ),
    "partition child without rls": Violation(
        "alter table public.activity_log_2024 disable row level security;\n",
        frozenset({"TI-2", "TI-4"}),
        "rls-disabled",
    ),
    "table without policy in its file": Violation(
        "create table public.notes (\n"
        "    id uuid primary key default gen_random_uuid(),\n"
        "    organization_id uuid not null references public.organizations (id),\n"
        "    body text not null\n"
        ");\n",
        frozenset({"TI-3"}),
        "table-without-policy-in-file",
        extra_files={
            "20990102000000_notes_policies.sql": (
                "alter table public.notes enable row level security;\n"
                "create policy notes_all on public.notes for all to authenticated\n"
                "    using ((select private.is_member(organization_id)))\n"
                "    with check ((select private.is_member(organization_id)));\n"
            )
        },
    ),
    "definer view": Violation(
        "create view public.ticket_overview as\n"
        "    select id, organization_id, subject from public.tickets;\n",
        frozenset({"TI-5"}),
        "definer-view",
    ),
    "definer function leaks by parameter": Violation(
        "create function public.org_tickets(org uuid)\n"
        "returns setof public.tickets language sql stable security definer\n"
        "set search_path = ''\n"
        "as $$ select * from public.tickets where organization_id = org $$;\n",
        frozenset({"TI-5"}),
        "cross-tenant-call",
        line=None,
    ),
    "definer function without search_path": Violation(
        "create function public.my_membership_count() returns bigint\n"
        "language sql stable security definer\n"
        "as $$ select count(*) from public.members where user_id = auth.uid() $$;\n",
        frozenset({"TI-5"}),
        "definer-function-search-path",
    ),
    "app role owns table without force": Violation(
        "alter table public.tickets owner to authenticated;\n",
        frozenset({"TI-4", "TI-5"}),
        "app-role-owns-table",
        line=None,
    ),
    "app role with bypassrls": Violation(
        "alter role authenticated bypassrls;\n",
        frozenset({"TI-4", "TI-5"}),
        "app-role-bypassrls",
        line=None,
        own_cluster=True,
    ),
}


def run_violation(tmp_path, database_url, violation: Violation):
    folder = copy_acme_migrations(tmp_path, extra_sql=violation.sql)
    for name, text in violation.extra_files.items():
        (folder / name).write_text(text)
    config = tenancy_config(
        tmp_path, database_url=None if violation.own_cluster else database_url
    )
    return run_assay(
        "run",
        "--config",
        str(config),
        "--controls",
        TI_CONTROLS,
        cwd=tmp_path,
        report_dir=tmp_path / "report",
    )


def test_acme_passes_tenant_isolation(tmp_path, shared_postgres_url):
    copy_acme_migrations(tmp_path)
    config = tenancy_config(tmp_path, database_url=shared_postgres_url)
    result = run_assay(
        "run", "--config", str(config), "--controls", TI_CONTROLS,
        cwd=tmp_path, report_dir=tmp_path / "report",
    )

    assert result.statuses() == {c: "passed" for c in TI_CONTROLS.split(",")}, (
        result.stdout + result.stderr
    )
    assert result.status == 0


@pytest.mark.parametrize("name", sorted(VIOLATIONS))
def test_violation_fails_owning_controls(tmp_path, shared_postgres_url, name):
    violation = VIOLATIONS[name]
    result = run_violation(tmp_path, shared_postgres_url, violation)

    assert result.status == 1, result.stdout + result.stderr
    assert result.failed() == violation.fails, result.stdout
    owner = sorted(violation.fails)[-1] if violation.rule.startswith("cross") else None
    rules = {
        f["rule"]
        for control in violation.fails
        for f in result.findings(control)
    }
    assert violation.rule in rules, rules
    matching = [
        f
        for control in violation.fails
        for f in result.findings(control)
        if f["rule"] == violation.rule
    ]
    if violation.line is not None:
        assert any(
            (f["file"] or "").endswith(VIOLATION_FILE) and f["line"] == violation.line
            for f in matching
        ) or violation.extra_files, matching
    assert owner is None or matching


def test_probe_leak_shows_rows_and_statement(tmp_path, shared_postgres_url):
    result = run_violation(
        tmp_path, shared_postgres_url, VIOLATIONS["signed-in user reads all"]
    )

    leaks = [f for f in result.findings("TI-4") if f["rule"] == "cross-tenant-select"]
    assert leaks, result.stdout
    assert leaks[0]["table"] == "public.tickets"
    assert leaks[0]["details"]["rows_seen"]
    assert "select * from" in leaks[0]["details"]["statement"]
    assert leaks[0]["details"]["actor"] == "member_of_A"


def test_membership_subselect_variant_passes(tmp_path, shared_postgres_url):
    sql = (
        "drop policy tickets_select on public.tickets;\n"
        "create policy tickets_select on public.tickets for select to authenticated\n"
        "    using (organization_id in (select m.organization_id from public.members m\n"
        "                               where m.user_id = (select auth.uid())));\n"
    )
    copy_acme_migrations(tmp_path, extra_sql=sql)
    config = tenancy_config(tmp_path, database_url=shared_postgres_url)
    result = run_assay(
        "run", "--config", str(config), "--controls", TI_CONTROLS,
        cwd=tmp_path, report_dir=tmp_path / "report",
    )

    assert result.failed() == set(), result.stdout
    assert result.status == 0
