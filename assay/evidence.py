"""Control verdicts and the evidence folder of a run.

``evidence.json`` is the source every other evidence file is rendered from.
Writers for further formats implement ``EvidenceWriter`` and are listed in
``WRITERS``; each gets the folder and the evidence document.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from assay import __version__
from assay.catalog import Catalog, Control
from assay.config import Config
from assay.errors import EvidenceError
from assay.findings import Finding

__all__ = [
    "EVIDENCE_FILE",
    "EvidenceWriter",
    "WRITERS",
    "control_status",
    "load_evidence",
    "write_run_evidence",
]

logger = logging.getLogger(__name__)

EVIDENCE_FILE = "evidence.json"
SCHEMA = "assay-evidence/1"

# Worst first: a control takes the worst status among its checks.
_RANK = ("failed", "expired", "error", "waived", "attested", "passed", "not_applicable")


class EvidenceWriter(Protocol):
    """Renders evidence.json into one more file of the evidence folder."""

    name: str

    def write(self, folder: Path, evidence: dict[str, Any]) -> list[Path]: ...


WRITERS: list[EvidenceWriter] = []


def control_status(
    control: Control,
    outcomes: list[dict[str, Any]],
    findings: list[Finding],
    not_applicable: str | None,
) -> tuple[str, list[str]]:
    """Decide a control's status from its checks' outcomes and findings.

    An undecided check makes the control an error, never a pass; a control
    whose checks did not all run is an error too.
    """
    if not_applicable:
        return "not_applicable", [not_applicable]
    if not outcomes:
        return "error", ["no check ran for this control, so nothing was proved"]

    reasons = [o["reason"] for o in outcomes if o.get("reason")]
    ran = {o["check"].split("::")[-1].split("[")[0] for o in outcomes}
    wanted = {name.split("::")[-1] for name in control.checks}
    missing = sorted(wanted - ran)
    statuses = [o["status"] for o in outcomes]
    if missing and "failed" not in statuses:
        return "error", reasons + [f"check {name} did not run" for name in missing]

    worst = min(statuses, key=_RANK.index)
    if worst == "passed":
        waived = [f for f in findings if f.waived and f.level in ("error", "undecided")]
        if waived:
            return "waived", [f"{len(waived)} finding(s) waived"]
    return worst, reasons


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _git_commit(root: Path) -> dict[str, Any]:
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return {"commit": None, "dirty": None}
    if commit.returncode != 0:
        return {"commit": None, "dirty": None}
    return {"commit": commit.stdout.strip(), "dirty": bool(dirty.stdout.strip())}


def _migration_checksums(config: Config) -> list[dict[str, str]]:
    folder = config.path(config.migrations.path)
    if not folder.is_dir():
        return []
    return [
        {"file": os.path.relpath(path, config.root), "sha256": _sha256(path)}
        for path in sorted(folder.rglob("*.sql"))
    ]


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).isoformat(
        timespec="seconds"
    )


def build_evidence(
    *,
    config: Config,
    catalog: Catalog,
    results: list[dict[str, Any]],
    run_info: dict[str, Any],
    started: float,
    usage_errors: list[str],
) -> dict[str, Any]:
    """Assemble the evidence document: run metadata plus one entry per control."""
    finished = time.time()
    counts: dict[str, int] = {}
    for result in results:
        counts[result["status"]] = counts.get(result["status"], 0) + 1
    config_path = config.root / Path(config.file).name
    return {
        "schema": SCHEMA,
        "run": {
            "started": _iso(started),
            "finished": _iso(finished),
            "duration_seconds": round(finished - started, 3),
            "harness": {"name": "assay", "version": __version__},
            "python": platform.python_version(),
            "git": _git_commit(config.root),
            "config": {
                "file": config.file,
                "sha256": _sha256(config_path) if config_path.is_file() else None,
            },
            "migrations": _migration_checksums(config),
            **run_info,
        },
        "criteria": {
            criterion: catalog.criteria.get(criterion, "")
            for result in results
            for criterion in result["criteria"]
        },
        "summary": counts,
        "usage_errors": usage_errors,
        "controls": results,
    }


def write_run_evidence(folder: Path, **kwargs: Any) -> Path:
    """Write evidence.json (and every registered writer's file) into `folder`."""
    evidence = build_evidence(**kwargs)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / EVIDENCE_FILE
    target.write_text(json.dumps(evidence, indent=2, default=str) + "\n", "utf-8")
    logger.info("wrote %s", target)
    for writer in WRITERS:
        writer.write(folder, evidence)
    return target


def load_evidence(folder: Path) -> dict[str, Any]:
    """Read a folder's evidence.json, or raise EvidenceError saying what is wrong."""
    path = folder / EVIDENCE_FILE
    try:
        return json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise EvidenceError(
            f"{path}: not found; pass a folder written by `assay run`"
        ) from None
    except (OSError, ValueError) as exc:
        raise EvidenceError(f"{path}: unreadable evidence ({exc})") from None


# The renderers of report.html, OSCAL and SARIF. Imported last because
# assay.reports imports nothing from this module.
from assay.reports import default_writers as _default_writers  # noqa: E402

WRITERS.extend(_default_writers())
