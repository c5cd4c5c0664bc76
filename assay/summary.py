"""The terminal summary: per control a status, and for failures what to fix where."""

from __future__ import annotations

from typing import Any

__all__ = ["render_summary"]

MAX_FINDINGS_SHOWN = 8

_MARK = {
    "passed": "PASS",
    "failed": "FAIL",
    "error": "ERROR",
    "not_applicable": "N/A",
    "waived": "WAIVED",
    "attested": "ATTESTED",
    "expired": "EXPIRED",
}


def _finding_line(finding: dict[str, Any]) -> str:
    where = ""
    if finding.get("file") and finding.get("line"):
        where = f"{finding['file']}:{finding['line']}: "
    elif finding.get("table"):
        where = f"{finding['table']}: "
    text = f"    {where}{finding['message']}"
    if finding.get("waived"):
        text += " [waived]"
    if finding.get("fix"):
        text += f"\n      fix: {finding['fix']}"
    return text


def render_summary(
    results: list[dict[str, Any]],
    join_errors: list[str] | None = None,
    usage_errors: list[str] | None = None,
) -> list[str]:
    """Return the lines of the Assay section of the terminal summary."""
    lines = ["", "Assay controls"]
    for result in results:
        lines.append(
            f"  {_MARK.get(result['status'], result['status']):8} {result['id']:6} "
            f"{result['title']}"
        )
        shown = [
            f
            for f in result["findings"]
            if f["level"] in ("error", "undecided") or f.get("waived")
        ]
        for finding in shown[:MAX_FINDINGS_SHOWN]:
            lines.append(_finding_line(finding))
        if len(shown) > MAX_FINDINGS_SHOWN:
            lines.append(
                f"    ... {len(shown) - MAX_FINDINGS_SHOWN} more in evidence.json"
            )
        if result["status"] in ("error", "not_applicable") and not shown:
            for reason in result["reasons"][:3]:
                first = reason.splitlines()[0] if reason else ""
                lines.append(f"    {first}")
        for observed in result["observations"].values():
            if isinstance(observed, dict) and observed.get("matrix_summary"):
                lines.extend(f"    {row}" for row in observed["matrix_summary"])
    for error in join_errors or []:
        lines.append(f"  catalog: {error}")
    for error in usage_errors or []:
        lines.append(f"  configuration: {error}")
    counts: dict[str, int] = {}
    for result in results:
        counts[result["status"]] = counts.get(result["status"], 0) + 1
    lines.append(
        "  " + ", ".join(f"{n} {status.replace('_', ' ')}" for status, n in counts.items())
    )
    return lines
