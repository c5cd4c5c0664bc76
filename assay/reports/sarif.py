"""results.sarif: findings as SARIF 2.1.0 for code-scanning annotations.

Each control is one rule (``assay/TI-2``), so a code-scanning view can
filter and dismiss per claim. A finding with a file becomes a result on that
file and line. A finding without one is placed on its table, policy or
request as a logical location. A failed or undecided control with no finding
still gets one result, so the failure is never silent. Waived findings carry
an accepted external suppression with the waiver's reason.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path, PurePosixPath
from typing import Any

from assay.reports import FAILING

__all__ = ["SarifReport", "build_sarif", "rule_id"]

logger = logging.getLogger(__name__)

SARIF_FILE = "results.sarif"
SARIF_SCHEMA_URI = (
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/"
    "sarif-schema-2.1.0.json"
)

_LEVELS = {"error": "error", "undecided": "error", "warning": "warning", "info": "note"}
_SECURITY_SEVERITY = {"critical": "9.5", "high": "8.0", "medium": "5.5", "low": "3.0"}


def rule_id(control_id: str) -> str:
    """Return the SARIF rule id of a control."""
    return f"assay/{control_id}"


def _rule(control: dict[str, Any]) -> dict[str, Any]:
    criteria = control.get("criteria", [])
    return {
        "id": rule_id(control["id"]),
        "name": control["id"].replace("-", ""),
        "shortDescription": {"text": control.get("title") or control["id"]},
        "fullDescription": {"text": control.get("claim") or control.get("title", "")},
        "help": {
            "text": (
                f"Claim: {control.get('claim', '')}\n"
                f"SOC 2 criteria: {', '.join(criteria) or 'none'}\n"
                "Each result names what broke the claim and, where known, the fix."
            )
        },
        "defaultConfiguration": {"level": "error"},
        "properties": {
            "tags": ["security", "compliance", *criteria],
            "precision": "high",
            "security-severity": _SECURITY_SEVERITY.get(
                control.get("severity", "high"), "8.0"
            ),
            "soc2-criteria": criteria,
            "control-type": control.get("type", "automated"),
        },
    }


def _is_relative(path: str) -> bool:
    return not PurePosixPath(path).is_absolute() and "://" not in path


def _location(finding: dict[str, Any]) -> dict[str, Any] | None:
    file = finding.get("file")
    if not file:
        return None
    artifact: dict[str, Any] = {"uri": file}
    if _is_relative(file):
        artifact["uriBaseId"] = "%SRCROOT%"
    physical: dict[str, Any] = {"artifactLocation": artifact}
    line = finding.get("line")
    if isinstance(line, int) and line >= 1:
        physical["region"] = {"startLine": line}
    return {"physicalLocation": physical}


def _logical_locations(finding: dict[str, Any]) -> list[dict[str, Any]]:
    locations = []
    if finding.get("table"):
        locations.append({"name": finding["table"], "kind": "table"})
    if finding.get("policy"):
        locations.append({"name": finding["policy"], "kind": "policy"})
    request = (finding.get("details") or {}).get("request")
    if request:
        locations.append({"name": str(request), "kind": "request"})
    return locations


def _fingerprint(control_id: str, finding: dict[str, Any]) -> str:
    # Line numbers move when a migration is edited, so they stay out of it.
    key = [control_id, finding.get("rule"), finding.get("file"), finding.get("table"),
           finding.get("policy"), finding.get("message")]
    return hashlib.sha256(json.dumps(key).encode()).hexdigest()[:32]


def _finding_result(
    control: dict[str, Any], index: int, finding: dict[str, Any]
) -> dict[str, Any]:
    text = finding.get("message", "")
    if finding.get("fix"):
        text += f" Fix: {finding['fix']}"
    result: dict[str, Any] = {
        "ruleId": rule_id(control["id"]),
        "ruleIndex": index,
        "level": _LEVELS.get(finding.get("level", "error"), "warning"),
        "message": {"text": text or f"{control['id']} finding"},
        "partialFingerprints": {"assayFinding/v1": _fingerprint(control["id"], finding)},
        "properties": {
            "assay-rule": finding.get("rule"),
            "assay-level": finding.get("level"),
            "source": finding.get("source"),
            "control-status": control.get("status"),
        },
    }
    physical = _location(finding)
    logical = _logical_locations(finding)
    if physical is not None:
        if logical:
            physical["logicalLocations"] = logical
        result["locations"] = [physical]
    elif logical:
        result["locations"] = [{"logicalLocations": logical}]
    if finding.get("waived"):
        waiver = finding.get("waiver") or {}
        suppression: dict[str, Any] = {"kind": "external", "status": "accepted"}
        if waiver.get("reason"):
            suppression["justification"] = str(waiver["reason"])
        result["suppressions"] = [suppression]
    return result


def _control_result(control: dict[str, Any], index: int) -> dict[str, Any]:
    reasons = "; ".join(r.splitlines()[0] for r in control.get("reasons", []) if r)
    return {
        "ruleId": rule_id(control["id"]),
        "ruleIndex": index,
        "level": "error",
        "kind": "fail",
        "message": {
            "text": f"{control['id']} {control['status']}: {reasons or 'no reason recorded'}"
        },
        "properties": {"control-status": control["status"]},
    }


def build_sarif(evidence: dict[str, Any]) -> dict[str, Any]:
    """Return the SARIF log for an evidence document."""
    controls = evidence.get("controls", [])
    run_meta = evidence.get("run", {})
    results = []
    for index, control in enumerate(controls):
        findings = control.get("findings", [])
        for finding in findings:
            results.append(_finding_result(control, index, finding))
        blocking = [f for f in findings if f.get("level") in ("error", "undecided")]
        if control.get("status") in FAILING and not blocking:
            results.append(_control_result(control, index))

    harness = run_meta.get("harness") or {}
    invocation: dict[str, Any] = {
        "executionSuccessful": not evidence.get("usage_errors"),
    }
    if run_meta.get("started"):
        invocation["startTimeUtc"] = run_meta["started"]
    if run_meta.get("finished"):
        invocation["endTimeUtc"] = run_meta["finished"]
    run: dict[str, Any] = {
        "tool": {
            "driver": {
                "name": "Assay",
                "version": str(harness.get("version", "0")),
                "rules": [_rule(control) for control in controls],
            }
        },
        "invocations": [invocation],
        "results": results,
        "columnKind": "unicodeCodePoints",
        "originalUriBaseIds": {
            "%SRCROOT%": {"description": {"text": "the folder holding assay.yaml"}}
        },
        "properties": {"summary": evidence.get("summary", {})},
    }
    commit = (run_meta.get("git") or {}).get("commit")
    if commit:
        run["automationDetails"] = {"id": f"assay/{commit}/{run_meta.get('started', '')}"}
    return {"$schema": SARIF_SCHEMA_URI, "version": "2.1.0", "runs": [run]}


class SarifReport:
    """Writes results.sarif."""

    name = "sarif"

    def write(self, folder: Path, evidence: dict[str, Any]) -> list[Path]:
        target = folder / SARIF_FILE
        # Compact: SARIF is read by tools, and indenting made writing 10,000
        # findings about five times slower and the file a third larger.
        document = json.dumps(build_sarif(evidence), separators=(",", ":"))
        target.write_text(document + "\n", "utf-8")
        logger.info("wrote %s", target)
        return [target]
