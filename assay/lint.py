"""`assay lint`: the static tenant-isolation rules, no database, for pre-commit."""

from __future__ import annotations

import json
from pathlib import Path

from assay.config import Config
from assay.findings import Finding

__all__ = ["lint", "render"]

STATIC_CONTROLS = ("TI-1", "TI-2", "TI-3", "TI-5")


def _load(config: Config):
    from assay.fixtures.database import load_migrations
    from assay.schema import build_model

    files = load_migrations(config, cache=True)
    return files, build_model(files)


def lint(config: Config, *, controls: list[str] | None = None) -> list[Finding]:
    """Run the static rules of the selected controls over the migrations."""
    from assay.catalog import load_catalog
    from assay.tenancy import (
        TenancyScope,
        check_bypass,
        check_policies,
        check_same_file,
        check_tenant_column,
    )

    load_catalog(config.catalog_dir()).select(controls)
    wanted = [c for c in STATIC_CONTROLS if not controls or c in controls]
    if config.tenancy is None or not wanted:
        return []
    scope = TenancyScope.from_config(config.tenancy)
    files, model = _load(config)
    if model.table(scope.tenant_table) is None:
        raise config.error(
            ("tenancy", "tenant_table"),
            scope.tenant_table,
            "no migration creates this table",
            "Name the table whose primary key is the tenant id",
        )
    membership = scope.membership_table
    if membership is not None and model.table(membership) is None:
        raise config.error(
            ("tenancy", "membership", "table"),
            membership,
            "no migration creates this table",
            "Name the table that links users to tenants, or give tenancy.seed_sql",
        )

    findings: list[Finding] = []
    if "TI-1" in wanted:
        findings += check_tenant_column(model, scope, source="static")[0]
    if "TI-2" in wanted:
        findings += check_policies(model, scope, source="static")[0]
    if "TI-3" in wanted:
        findings += check_same_file(files, model, scope)[0]
    if "TI-5" in wanted:
        findings += check_bypass(model, scope, source="static")[0]
    return findings


def _escape_annotation(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def render(findings: list[Finding], fmt: str) -> str:
    """Format findings as text, JSON or GitHub workflow annotations."""
    if fmt == "json":
        rows = [
            {
                "control": f.control,
                "rule": f.rule,
                "severity": f.level,
                "file": f.file,
                "line": f.line,
                "table": f.table,
                "message": f.message,
            }
            for f in findings
        ]
        return json.dumps({"findings": rows}, indent=2) + "\n"
    if fmt == "github":
        lines = []
        for f in findings:
            if f.blocking:
                kind = "error"
            elif f.level == "warning":
                kind = "warning"
            else:
                kind = "notice"
            params = []
            if f.file:
                params.append(f"file={f.file}")
                if f.line:
                    params.append(f"line={f.line}")
            params.append(f"title={f.control} {f.rule}")
            lines.append(f"::{kind} {','.join(params)}::{_escape_annotation(f.message)}")
        return "\n".join(lines) + ("\n" if lines else "")
    lines = []
    for f in findings:
        where = f"{f.file}:{f.line}" if f.file and f.line else (f.file or f.table or "-")
        lines.append(f"{where}: {f.control} {f.level}: {f.message}")
        if f.fix and f.blocking:
            lines.append(f"    fix: {f.fix}")
    blocking = sum(1 for f in findings if f.blocking)
    lines.append(f"{blocking} blocking finding(s), {len(findings) - blocking} other")
    return "\n".join(lines) + "\n"
