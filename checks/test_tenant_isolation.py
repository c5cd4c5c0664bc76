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
