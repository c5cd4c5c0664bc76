"""Evidence renderers: report.html, OSCAL assessment-results and SARIF.

Each renderer reads only the evidence document that ``assay run`` writes to
evidence.json, so a merged or re-rendered folder gets the same files as a
single run. The helpers below are shared by the renderers; the writer
classes are imported lazily so that ``assay.evidence`` can register them
without an import cycle.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

__all__ = [
    "FAILING",
    "PASSING",
    "all_findings",
    "default_writers",
    "finding_where",
    "signature_notice",
    "write_reports",
]

# Statuses that let a run pass, and those that fail it (error is never a pass).
PASSING = ("passed", "waived", "attested", "not_applicable")
FAILING = ("failed", "error", "expired")

STATUS_LABELS = {
    "passed": "passed",
    "failed": "failed",
    "error": "error (undecided)",
    "not_applicable": "not applicable",
    "waived": "waived",
    "attested": "attested",
    "expired": "expired",
}


def all_findings(evidence: dict[str, Any]) -> Iterator[tuple[dict, dict]]:
    """Yield (control, finding) for every finding of every control."""
    for control in evidence.get("controls", []):
        for finding in control.get("findings", []):
            yield control, finding


def finding_where(finding: dict[str, Any]) -> str:
    """Return where a finding points: file:line, table and policy, or request."""
    parts = []
    if finding.get("file"):
        line = finding.get("line")
        parts.append(f"{finding['file']}:{line}" if line else finding["file"])
    if finding.get("table"):
        parts.append(f"table {finding['table']}")
    if finding.get("policy"):
        parts.append(f"policy {finding['policy']}")
    request = (finding.get("details") or {}).get("request")
    if request:
        parts.append(f"request {request}")
    return ", ".join(parts)


def signature_notice(evidence: dict[str, Any]) -> str:
    """Return the sentence every report prints about how the folder is signed."""
    signature = evidence.get("run", {}).get("signature")
    if not signature:
        return (
            "This evidence carries no signature facts, so whether manifest.json "
            "is signed is unknown; run `assay verify` on the folder."
        )
    if signature.get("self_made"):
        return (
            "The signature on this evidence is self-made: no signing key was "
            "configured, so the run signed manifest.json with a throwaway Ed25519 "
            "key and kept only its public half in the folder. It shows that the "
            "files match each other, not who produced them."
        )
    return (
        f"manifest.json is signed with Ed25519 key sha256:"
        f"{signature.get('public_key_sha256', '?')[:16]} from "
        f"{signature.get('key_source', 'a configured key')}. Check it with "
        "`assay verify FOLDER --public-key KEY`."
    )


def default_writers() -> list[Any]:
    """Return one instance of each renderer shipped with Assay."""
    from assay.reports.html import HtmlReport
    from assay.reports.oscal import OscalReport
    from assay.reports.sarif import SarifReport

    return [HtmlReport(), OscalReport(), SarifReport()]


def write_reports(folder: Path, evidence: dict[str, Any]) -> list[Path]:
    """Render every shipped report of `evidence` into `folder`."""
    written: list[Path] = []
    for writer in default_writers():
        written += writer.write(folder, evidence)
    return written
