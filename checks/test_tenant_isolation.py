"""Tenant isolation: TI-1 to TI-5, from the migrations and the live catalog."""

from __future__ import annotations

import pytest

from assay.tenancy import (
    check_bypass,
    check_policies,
    check_same_file,
    check_tenant_column,
    reconcile,
)


@pytest.mark.control("TI-1")
def test_tenant_column_on_every_table(evidence, static_model, live_catalog, tenancy_scope):
    live_model, _ = live_catalog
    static, _ = check_tenant_column(static_model, tenancy_scope, source="static")
    live, examined = check_tenant_column(
        live_model, tenancy_scope, source="live", static=static_model
    )
    evidence.examined_count("customer-data tables", examined)
    evidence.extend(reconcile(static, live))
    evidence.verdict()


@pytest.mark.control("TI-2")
def test_rls_policies_scope_every_command(
    evidence, static_model, live_catalog, tenancy_scope
):
    live_model, _ = live_catalog
    static, _ = check_policies(static_model, tenancy_scope, source="static")
    live, examined = check_policies(
        live_model, tenancy_scope, source="live", static=static_model
    )
    evidence.examined_count("customer-data tables", examined)
    evidence.extend(reconcile(static, live))
    evidence.verdict()


@pytest.mark.control("TI-3")
def test_new_tables_ship_policies(evidence, migration_files, static_model, tenancy_scope):
    findings, examined = check_same_file(migration_files, static_model, tenancy_scope)
    evidence.examined_count("tables created by migrations", examined)
    evidence.extend(findings)
    evidence.verdict()


@pytest.mark.control("TI-5")
def test_no_bypass_in_catalog(evidence, static_model, live_catalog, tenancy_scope):
    live_model, facts = live_catalog
    static, _ = check_bypass(static_model, tenancy_scope, source="static")
    live, examined = check_bypass(
        live_model, tenancy_scope, source="live", static=static_model, live=facts
    )
    evidence.observe(
        "security_definer_functions",
        {signature: roles for signature, roles in sorted(facts.executable_definers.items())},
    )
    evidence.observe("views_readable_by_app_roles", facts.view_readers)
    evidence.examined_count("objects", examined)
    evidence.extend(reconcile(static, live))
    evidence.verdict()


def _locator(static_model):
    def locate(name: str):
        table = static_model.tables.get(name)
        created = getattr(table, "created", None) if table else None
        return (created.file, created.line) if created else (None, None)

    return locate


@pytest.mark.control("TI-4")
def test_cross_tenant_attack(
    evidence, attack, seeded_tenants, live_catalog, static_model, tenancy_scope
):
    from assay.attack import matrix_lines, own_rows_visible, probe_findings, summarise
    from assay.findings import Finding
    from assay.tenancy import customer_tables

    live_model, _ = live_catalog
    tables = [t.name for t in customer_tables(live_model, tenancy_scope)]
    locate = _locator(static_model)
    results = []
    own_visible = 0
    for table in tables:
        file, line = locate(table)
        if table in seeded_tenants.errors or not seeded_tenants.rows.get(table, {}).get("B"):
            reason = seeded_tenants.errors.get(table, "no row of tenant B was written")
            evidence.add(
                Finding(
                    control="TI-4",
                    rule="table-not-seeded",
                    level="undecided",
                    message=f"{table} could not be seeded, so it was not attacked: {reason}",
                    file=file,
                    line=line,
                    table=table,
                    source="probe",
                    fix="make the table seedable (or give tenancy.seed_sql)",
                )
            )
            continue
        results.extend(attack.attack_table(table))
        own_visible += own_rows_visible(attack, table) or 0

    evidence.extend(probe_findings("TI-4", results, locate))
    matrix = summarise(results)
    evidence.observe("matrix", matrix)
    evidence.observe("matrix_summary", matrix_lines(matrix))
    evidence.observe("probes", attack.probes)
    evidence.observe("probe_seconds", round(attack.seconds, 3))
    evidence.examined_count("tables attacked", len(matrix))
    if matrix and own_visible == 0:
        evidence.add(
            Finding(
                control="TI-4",
                rule="act-as-ineffective",
                level="undecided",
                message=(
                    "acting as a member of tenant A showed none of A's own rows in any "
                    "table, so every denial may come from a broken act_as setup rather "
                    "than from the policies"
                ),
                source="probe",
                fix="check tenancy.act_as, tenancy.role and the membership table",
            )
        )
    evidence.verdict()


APP_SCHEMAS_SKIPPED = ("auth", "storage", "extensions", "graphql", "realtime", "vault")


@pytest.mark.control("TI-5")
def test_definer_functions_and_views_do_not_leak(
    evidence, attack, live_catalog, static_model, tenancy_scope
):
    from assay.attack import probe_findings

    live_model, facts = live_catalog
    locate = _locator(static_model)
    results = []
    examined = 0
    for name, functions in sorted(live_model.functions.items()):
        if name.split(".", 1)[0] in APP_SCHEMAS_SKIPPED:
            continue
        for function in functions:
            examined += 1
            if function.signature not in facts.executable_definers:
                continue
            if function.returns in ("trigger", "event_trigger"):
                continue
            results.extend(attack.call_definer(function))
    for view, readers in sorted(facts.view_readers.items()):
        examined += 1
        table = live_model.tables.get(view)
        # A security_invoker view applies the caller's RLS, so whatever it shows
        # is a table's leak (TI-4); only definer views bypass RLS.
        if readers and table is not None and not table.security_invoker:
            results.append(attack.read_view(view))
    evidence.observe(
        "probed",
        sorted({f"{r.operation} {r.table}" for r in results}),
    )
    evidence.examined_count("functions and views", examined)
    evidence.extend(probe_findings("TI-5", results, locate))
    evidence.verdict()
