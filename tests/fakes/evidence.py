"""Evidence documents shaped like the ones `assay run` writes, for report tests.

`evidence_document` follows ``assay.evidence.build_evidence``: run metadata,
criteria titles, a status summary and one entry per control built from
``Finding.to_dict()``. `write_folder` renders it into a signed folder the way
the run plugin does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from assay.findings import Finding

CRITERIA = {
    "CC6.1": "Logical access security over protected information assets",
    "CC6.3": "Access is authorised, modified or removed by role and least privilege",
    "CC7.1": "Detection and monitoring of configuration changes",
}

MIGRATION = "examples/acme/supabase/migrations/20240102000000_tenancy.sql"


def control(
    control_id: str,
    status: str,
    findings: list[Finding] = (),
    *,
    criteria: tuple[str, ...] = ("CC6.1",),
    reasons: list[str] | None = None,
    type: str = "automated",
) -> dict[str, Any]:
    """One control entry as AssayRun.control_results builds it."""
    outcome = "passed" if status in ("passed", "waived") else status
    return {
        "id": control_id,
        "title": f"Title of {control_id}",
        "claim": f"The claim that {control_id} proves holds.",
        "family": "tenant-isolation",
        "severity": "high",
        "type": type,
        "status": status,
        "reasons": reasons if reasons is not None else [],
        "criteria": list(criteria),
        "checks": [
            {
                "status": outcome,
                "reason": "",
                "check": f"checks/test_x.py::test_{control_id.lower().replace('-', '_')}",
                "phase": "call",
                "duration": 0.012,
            }
        ],
        "findings": [f.to_dict() for f in findings],
        "observations": {"test_check": {"examined": {"tables": 4}}},
    }


def rls_finding(control_id: str = "TI-2", line: int = 14, **changes: Any) -> Finding:
    values = dict(
        control=control_id,
        rule="policy-not-tenant-scoped",
        message="policy tickets_select on public.tickets uses USING (true)",
        file=MIGRATION,
        line=line,
        table="public.tickets",
        policy="tickets_select",
        fix="Compare organization_id with the member's tenant",
    )
    values.update(changes)
    return Finding(**values)


def evidence_document(
    controls: list[dict[str, Any]] | None = None,
    *,
    started: str = "2026-01-05T10:00:00+00:00",
    commit: str = "0123456789abcdef0123456789abcdef01234567",
    signature: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A whole evidence document; the default has a pass, a failure and a waiver."""
    if controls is None:
        waived = rls_finding("TI-3", line=30, rule="policy-in-later-file").with_waiver(
            {
                "approver": "security-lead@example.com",
                "reason": "legacy table, rewritten next quarter",
                "expires": "2026-06-30",
                "scope": "public.legacy",
            }
        )
        controls = [
            control("TI-1", "passed"),
            control("TI-2", "failed", [rls_finding()], reasons=["1 policy open"]),
            control("TI-3", "waived", [waived], criteria=("CC6.1", "CC7.1")),
            control(
                "TI-4",
                "not_applicable",
                reasons=["assay.yaml has no `app` section"],
                criteria=("CC6.3",),
            ),
        ]
    summary: dict[str, int] = {}
    for item in controls:
        summary[item["status"]] = summary.get(item["status"], 0) + 1
    run: dict[str, Any] = {
        "started": started,
        "finished": started.replace("10:00:00", "10:01:30"),
        "duration_seconds": 90.0,
        "harness": {"name": "assay", "version": "0.1.0"},
        "python": "3.11.2",
        "git": {"commit": commit, "dirty": False},
        "config": {"file": "assay.yaml", "sha256": "ab" * 32},
        "migrations": [{"file": MIGRATION, "sha256": "cd" * 32}],
        "postgres_version": "15.10",
    }
    if signature is not None:
        run["signature"] = signature
    return {
        "schema": "assay-evidence/1",
        "run": run,
        "criteria": {
            c: CRITERIA[c] for item in controls for c in item["criteria"]
        },
        "summary": summary,
        "usage_errors": [],
        "controls": controls,
    }


def write_folder(folder: Path, evidence: dict[str, Any], signer=None) -> Path:
    """Write evidence.json, junit.xml and every report, then sign the folder."""
    from assay.manifest import load_signer, sign_folder
    from assay.reports import write_reports

    signer = signer or load_signer(None, environ={})
    evidence.setdefault("run", {})["signature"] = signer.describe()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "evidence.json").write_text(json.dumps(evidence, indent=2) + "\n")
    (folder / "junit.xml").write_text(
        '<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" '
        'tests="1"><testcase classname="checks.test_x" name="test_ti_1"/>'
        "</testsuite></testsuites>\n"
    )
    write_reports(folder, evidence)
    sign_folder(folder, signer)
    return folder
