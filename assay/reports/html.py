"""report.html: the evidence as one page per SOC 2 criterion and per control.

Rendered with Jinja2 from ``assay/templates/report.html.j2`` with
autoescaping on, because finding messages quote migration text and HTTP
responses. The print stylesheet starts each criterion and control on a new
page, so the file prints as an auditor's binder.
"""

from __future__ import annotations

import functools
import json
import logging
from collections import defaultdict
from pathlib import Path
from typing import Any

import jinja2

from assay.reports import (
    FAILING,
    STATUS_LABELS,
    finding_where,
    signature_notice,
)

__all__ = ["HtmlReport", "render_html"]

logger = logging.getLogger(__name__)

REPORT_FILE = "report.html"

# Longer values are cut in the HTML; evidence.json keeps them whole.
MAX_VALUE_CHARS = 2000

# Worst first, as in evidence.py, to give each criterion the worst status of
# the controls mapped to it.
_RANK = ("failed", "expired", "error", "waived", "attested", "passed", "not_applicable")

# Run keys shown in the metadata table in this order; others follow.
_RUN_KEYS = ("started", "finished", "duration_seconds", "harness", "python", "git")


@functools.cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("assay", "templates"),
        autoescape=True,
        undefined=jinja2.ChainableUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["label"] = lambda status: STATUS_LABELS.get(status, status)
    env.filters["where"] = finding_where
    env.filters["show"] = _show
    return env


def _show(value: Any) -> str:
    """Render a metadata or observation value as short readable text."""
    if isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, indent=1, sort_keys=True, default=str)
    if len(text) > MAX_VALUE_CHARS:
        text = text[:MAX_VALUE_CHARS] + " … (cut here; evidence.json has the rest)"
    return text


def _worst(statuses: list[str]) -> str:
    known = [s for s in statuses if s in _RANK]
    return min(known, key=_RANK.index) if known else "error"


def _criteria_pages(evidence: dict[str, Any]) -> list[dict[str, Any]]:
    by_criterion: dict[str, list[dict]] = defaultdict(list)
    for control in evidence.get("controls", []):
        for criterion in control.get("criteria", []):
            by_criterion[criterion].append(control)
    titles = evidence.get("criteria", {})
    return [
        {
            "id": criterion,
            "title": titles.get(criterion, ""),
            "status": _worst([c["status"] for c in controls]),
            "controls": controls,
        }
        for criterion, controls in sorted(by_criterion.items())
    ]


def _run_rows(run: dict[str, Any]) -> list[tuple[str, Any]]:
    rows = [(key, run[key]) for key in _RUN_KEYS if key in run]
    skip = set(_RUN_KEYS) | {"signature", "shards", "migrations"}
    rows += [(key, value) for key, value in run.items() if key not in skip]
    migrations = run.get("migrations") or []
    if migrations:
        rows.append(("migrations", f"{len(migrations)} files, checksums in evidence.json"))
    return rows


def render_html(evidence: dict[str, Any]) -> str:
    """Return the report page for an evidence document."""
    template = _environment().get_template("report.html.j2")
    controls = evidence.get("controls", [])
    run = evidence.get("run", {})
    waived = [
        (control, finding)
        for control in controls
        for finding in control.get("findings", [])
        if finding.get("waived")
    ]
    return template.render(
        run=run,
        run_rows=_run_rows(run),
        shards=run.get("shards") or [],
        signature=run.get("signature") or {},
        signature_notice=signature_notice(evidence),
        summary=evidence.get("summary", {}),
        usage_errors=evidence.get("usage_errors") or [],
        criteria=_criteria_pages(evidence),
        controls=controls,
        failing=FAILING,
        waived=waived,
        total_findings=sum(len(c.get("findings", [])) for c in controls),
    )


class HtmlReport:
    """Writes report.html."""

    name = "html"

    def write(self, folder: Path, evidence: dict[str, Any]) -> list[Path]:
        target = folder / REPORT_FILE
        target.write_text(render_html(evidence), "utf-8")
        logger.info("wrote %s", target)
        return [target]
