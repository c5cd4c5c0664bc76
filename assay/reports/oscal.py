"""oscal-assessment-results.json: the run as OSCAL 1.0.4 assessment-results.

One result per run. Each control is an observation (how it was tested) and
an OSCAL finding whose target is the control, satisfied or not. Each Assay
finding is an observation of its own, linked from its control's finding.
UUIDs are version-5 UUIDs of the run (start time, commit, config checksum)
plus the control or finding, so re-rendering the same evidence gives the
same document.

The OSCAL JSON schema rejects empty arrays, so every list is left out when
it would have no item.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

from assay.reports import STATUS_LABELS, signature_notice

__all__ = ["OscalReport", "build_oscal"]

logger = logging.getLogger(__name__)

OSCAL_FILE = "oscal-assessment-results.json"
OSCAL_VERSION = "1.0.4"
NAMESPACE = uuid.UUID("233abfc9-20ea-4f4a-819d-1645e2b69d89")
PROPS_NS = "urn:assay:evidence"

# The OSCAL objective status (state, reason) of each Assay status.
# Waived is not satisfied: the deviation exists and an approver accepted it.
_STATE = {
    "passed": ("satisfied", "pass"),
    "attested": ("satisfied", "pass"),
    "not_applicable": ("satisfied", "other"),
    "waived": ("not-satisfied", "other"),
    "failed": ("not-satisfied", "fail"),
    "expired": ("not-satisfied", "fail"),
    "error": ("not-satisfied", "other"),
}


def _prop(name: str, value: Any) -> dict[str, str] | None:
    if isinstance(value, bool):
        value = "true" if value else "false"
    text = " ".join(str(value).split()) if value is not None else ""
    if not text:
        return None
    return {"name": name, "ns": PROPS_NS, "value": text}


def _props(*pairs: tuple[str, Any]) -> list[dict[str, str]]:
    return [p for p in (_prop(name, value) for name, value in pairs) if p]


def _with(target: dict[str, Any], key: str, items: list) -> dict[str, Any]:
    if items:
        target[key] = items
    return target


class _Ids:
    """Stable UUIDs for one run."""

    def __init__(self, run: dict[str, Any]) -> None:
        git = run.get("git") or {}
        config = run.get("config") or {}
        self.run_key = f"{run.get('started')}|{git.get('commit')}|{config.get('sha256')}"

    def __call__(self, *parts: Any) -> str:
        return str(uuid.uuid5(NAMESPACE, "|".join([self.run_key, *map(str, parts)])))


def _timestamp(value: str | None) -> str:
    if value:
        return value
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _finding_observation(
    ids: _Ids, control: dict[str, Any], index: int, finding: dict[str, Any], when: str
) -> dict[str, Any]:
    rule = finding.get("rule") or "finding"
    observation: dict[str, Any] = {
        "uuid": ids("finding", control["id"], index, rule),
        "title": f"{control['id']} {rule}",
        "description": finding.get("message") or rule,
        "props": _props(
            ("assay-control", control["id"]),
            ("assay-rule", rule),
            ("assay-level", finding.get("level")),
            ("file", finding.get("file")),
            ("line", finding.get("line")),
            ("table", finding.get("table")),
            ("policy", finding.get("policy")),
            ("waived", "true" if finding.get("waived") else None),
        ),
        "methods": ["EXAMINE" if finding.get("source") == "static" else "TEST"],
        "types": ["finding"],
        "collected": when,
    }
    if finding.get("file"):
        where = finding["file"] + (f" line {finding['line']}" if finding.get("line") else "")
        observation["relevant-evidence"] = [
            {"href": quote(finding["file"], safe="/:.-_~"), "description": where}
        ]
    remarks = []
    if finding.get("fix"):
        remarks.append(f"Fix: {finding['fix']}")
    if finding.get("waived") and finding.get("waiver"):
        remarks.append("Waiver: " + json.dumps(finding["waiver"], sort_keys=True))
    if remarks:
        observation["remarks"] = "\n".join(remarks)
    return observation


def _control_observation(
    ids: _Ids, control: dict[str, Any], when: str
) -> dict[str, Any]:
    reasons = " ".join(r for r in control.get("reasons", []) if r)
    checks = [c.get("check") for c in control.get("checks", []) if c.get("check")]
    attested = control.get("type") == "attested"
    return {
        "uuid": ids("control", control["id"]),
        "title": f"{control['id']} {control.get('title', '')}".strip(),
        "description": (
            f"{control.get('claim', '')} Status: "
            f"{STATUS_LABELS.get(control['status'], control['status'])}. {reasons}"
        ).strip(),
        "props": _props(
            ("assay-status", control["status"]),
            ("checks", ", ".join(checks)),
            ("findings", len(control.get("findings", []))),
        ),
        "methods": ["EXAMINE" if attested else "TEST"],
        "types": ["control-objective"],
        "relevant-evidence": [
            {
                "href": "evidence.json",
                "description": f"the {control['id']} entry of evidence.json",
            }
        ],
        "collected": when,
    }


def _control_finding(
    ids: _Ids, control: dict[str, Any], observation_ids: list[str]
) -> dict[str, Any]:
    state, reason = _STATE.get(control["status"], ("not-satisfied", "other"))
    reasons = " ".join(r for r in control.get("reasons", []) if r)
    finding = {
        "uuid": ids("control-finding", control["id"]),
        "title": f"{control['id']} {control.get('title', '')}".strip(),
        "description": control.get("claim") or control["id"],
        "props": _props(
            *(("soc2-criterion", c) for c in control.get("criteria", [])),
            ("severity", control.get("severity")),
            ("assay-status", control["status"]),
        ),
        "target": {
            "type": "objective-id",
            "target-id": control["id"],
            "status": {"state": state, "reason": reason},
        },
        "related-observations": [{"observation-uuid": u} for u in observation_ids],
    }
    if reasons:
        finding["target"]["status"]["remarks"] = reasons
    return finding


def _result(ids: _Ids, evidence: dict[str, Any]) -> dict[str, Any]:
    run = evidence.get("run", {})
    when = _timestamp(run.get("finished"))
    controls = evidence.get("controls", [])
    observations, findings = [], []
    for control in controls:
        control_obs = _control_observation(ids, control, when)
        finding_obs = [
            _finding_observation(ids, control, index, finding, when)
            for index, finding in enumerate(control.get("findings", []))
        ]
        observations += [control_obs, *finding_obs]
        related = [control_obs["uuid"], *(o["uuid"] for o in finding_obs)]
        findings.append(_control_finding(ids, control, related))

    selection: dict[str, Any] = {}
    if controls:
        selection["include-controls"] = [{"control-id": c["id"]} for c in controls]
    else:
        selection["description"] = "No control was selected for this run."
    result: dict[str, Any] = {
        "uuid": ids("result"),
        "title": f"Assay run started {run.get('started', 'at an unknown time')}",
        "description": (
            "Security claims tested by Assay against a throwaway PostgreSQL and "
            "the running application; evidence.json in the same folder holds "
            "every check, finding and observation."
        ),
        "start": _timestamp(run.get("started")),
        "reviewed-controls": {"control-selections": [selection]},
    }
    if run.get("finished"):
        result["end"] = run["finished"]
    _with(result, "props", _props(*sorted(evidence.get("summary", {}).items())))
    _with(result, "observations", observations)
    _with(result, "findings", findings)
    return result


def _back_matter(ids: _Ids) -> dict[str, Any]:
    files = [
        ("evidence.json", "Assay evidence document", "application/json"),
        ("junit.xml", "JUnit report of the checks", "application/xml"),
        ("report.html", "Human-readable report", "text/html"),
        ("results.sarif", "SARIF findings", "application/sarif+json"),
        ("manifest.json", "Signed SHA-256 manifest of the folder", "application/json"),
    ]
    return {
        "resources": [
            {
                "uuid": ids("resource", name),
                "title": title,
                "rlinks": [{"href": name, "media-type": media}],
            }
            for name, title, media in files
        ]
    }


def build_oscal(evidence: dict[str, Any]) -> dict[str, Any]:
    """Return the OSCAL assessment-results document for an evidence document."""
    run = evidence.get("run", {})
    ids = _Ids(run)
    harness = run.get("harness") or {}
    git = run.get("git") or {}
    signature = run.get("signature") or {}
    metadata = {
        "title": "Assay assessment results",
        "last-modified": _timestamp(run.get("finished")),
        "version": str(harness.get("version", "0")),
        "oscal-version": OSCAL_VERSION,
        "props": _props(
            ("git-commit", git.get("commit")),
            ("git-dirty", git.get("dirty")),
            ("config-sha256", (run.get("config") or {}).get("sha256")),
            ("signature", "self-made" if signature.get("self_made") else
             signature.get("public_key_sha256")),
        ),
        "remarks": signature_notice(evidence),
    }
    if not metadata["props"]:
        del metadata["props"]
    document = {
        "uuid": ids("assessment-results"),
        "metadata": metadata,
        "import-ap": {
            "href": "evidence.json",
            "remarks": (
                "Assay has no separate assessment plan: the plan is the target's "
                "assay.yaml and the control catalog, whose checksums evidence.json "
                "records."
            ),
        },
        "results": [_result(ids, evidence)],
        "back-matter": _back_matter(ids),
    }
    return {"assessment-results": document}


class OscalReport:
    """Writes oscal-assessment-results.json."""

    name = "oscal"

    def write(self, folder: Path, evidence: dict[str, Any]) -> list[Path]:
        target = folder / OSCAL_FILE
        # Compact: indenting made writing 10,000 findings about five times slower.
        document = json.dumps(build_oscal(evidence), separators=(",", ":"))
        target.write_text(document + "\n", "utf-8")
        logger.info("wrote %s", target)
        return [target]
