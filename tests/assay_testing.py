"""Helpers for tests that run `assay` on copies of the reference target."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
ACME = REPO / "examples" / "acme"
ACME_MIGRATIONS = ACME / "supabase" / "migrations"

TENANCY = {
    "column": "organization_id",
    "tenant_table": "public.organizations",
    "membership": {
        "table": "public.members",
        "tenant_column": "organization_id",
        "user_column": "user_id",
    },
    "act_as": "supabase",
    "role": "authenticated",
    "exempt": [{"table": "public.plans", "reason": "global price list"}],
}


@dataclass
class AssayResult:
    """What one `assay` subprocess did: exit status, output and evidence."""

    status: int
    stdout: str
    stderr: str
    evidence: dict[str, Any] | None

    def control(self, control_id: str) -> dict[str, Any]:
        assert self.evidence is not None, self.stderr
        for control in self.evidence["controls"]:
            if control["id"] == control_id:
                return control
        raise KeyError(control_id)

    def statuses(self) -> dict[str, str]:
        assert self.evidence is not None, self.stderr
        return {c["id"]: c["status"] for c in self.evidence["controls"]}

    def failed(self) -> set[str]:
        return {cid for cid, status in self.statuses().items() if status == "failed"}

    def findings(self, control_id: str, level: str = "error") -> list[dict[str, Any]]:
        return [f for f in self.control(control_id)["findings"] if f["level"] == level]


def copy_acme_migrations(
    target: Path, *, extra_sql: str | None = None, replace: dict[str, tuple[str, str]] | None = None
) -> Path:
    """Copy acme's migrations to `target`, optionally adding a file or patching one.

    `replace` maps a migration file name to (old, new) text; `extra_sql` becomes
    a migration that runs after the others.
    """
    folder = target / "supabase" / "migrations"
    shutil.copytree(ACME_MIGRATIONS, folder)
    for name, (old, new) in (replace or {}).items():
        path = folder / name
        text = path.read_text()
        assert old in text, f"{old!r} not in {name}"
        path.write_text(text.replace(old, new))
    if extra_sql is not None:
        (folder / "20990101000000_seeded_violation.sql").write_text(extra_sql)
    return folder


def write_config(target: Path, sections: dict[str, Any]) -> Path:
    path = target / "assay.yaml"
    path.write_text(yaml.safe_dump(sections, sort_keys=False))
    return path


def tenancy_config(target: Path, *, database_url: str | None = None, **tenancy) -> Path:
    database: dict[str, Any] = {"flavor": "supabase"}
    if database_url:
        database.update(provider="url", url=database_url)
    return write_config(
        target,
        {
            "database": database,
            "migrations": {"path": "supabase/migrations"},
            "tenancy": {**TENANCY, **tenancy},
        },
    )


def run_assay(
    *args: str, cwd: Path, report_dir: Path | None = None, timeout: float = 240
) -> AssayResult:
    """Run the `assay` CLI as a real subprocess and read the evidence it wrote."""
    command = [sys.executable, "-m", "assay", *args]
    if report_dir is not None:
        command += ["--report-dir", str(report_dir)]
    # Bytecode caching stays on: every run would otherwise recompile Assay.
    env = dict(os.environ)
    env.pop("ASSAY_CANARY_DIR", None)
    done = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env
    )
    evidence = None
    if report_dir is not None and (report_dir / "evidence.json").is_file():
        evidence = json.loads((report_dir / "evidence.json").read_text())
    return AssayResult(done.returncode, done.stdout, done.stderr, evidence)
