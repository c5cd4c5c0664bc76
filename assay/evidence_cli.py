"""`assay verify`, `assay merge` and `assay diff`: working with evidence folders.

verify checks a folder against its signed manifest. merge joins the shard
folders of parallel CI jobs into one signed evidence set. diff compares a run
with a baseline and exits 1 on a regression, so CI can gate on it.

Exit status: 0 success, 1 evidence that does not verify or a regression,
2 bad usage (missing folder, unreadable key, conflicting shards).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from assay.cli import EXIT_FAILED, EXIT_OK, command
from assay.config import Config, load_config
from assay.errors import EvidenceError, UsageError
from assay.evidence import _RANK as WORST_FIRST
from assay.reports import FAILING, PASSING

__all__ = [
    "DiffResult",
    "diff_evidence",
    "merge_evidence",
    "merge_folders",
    "optional_config",
    "public_key_for",
    "read_evidence",
    "warn",
]

logger = logging.getLogger(__name__)

BLOCKING_LEVELS = ("error", "undecided")


# Shared ----------------------------------------------------------------------


def optional_config(args: argparse.Namespace) -> Config | None:
    """Load --config, else ./assay.yaml when present; None when there is neither."""
    if getattr(args, "config", None):
        return load_config(Path(args.config))
    default = Path("assay.yaml")
    return load_config(default) if default.is_file() else None


def public_key_for(args: argparse.Namespace, config: Config | None) -> tuple[Path | None, str]:
    """Return the key to verify with and how to name it, or (None, "")."""
    if getattr(args, "public_key", None):
        return Path(args.public_key), f"public key {args.public_key}"
    if config is not None and config.evidence.public_key:
        path = config.path(config.evidence.public_key)
        return path, f"evidence.public_key {path} from {config.file}"
    return None, ""


def read_evidence(folder: Path) -> dict[str, Any]:
    if not folder.is_dir():
        raise UsageError(
            f"{folder}: no such evidence folder; pass a folder written by `assay run`"
        )
    path = folder / "evidence.json"
    try:
        evidence = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{path}: not found; pass a folder written by `assay run`") from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: unreadable evidence ({exc})") from None
    if not isinstance(evidence, dict) or not isinstance(evidence.get("controls"), list):
        raise UsageError(f"{path}: not an Assay evidence document (no controls list)")
    return evidence


def warn(message: str) -> None:
    print(f"assay: warning: {message}", file=sys.stderr)


# verify ----------------------------------------------------------------------


def verify_command(args: argparse.Namespace) -> int:
    from assay.manifest import verify_folder

    config = optional_config(args)
    key, origin = public_key_for(args, config)
    result = verify_folder(Path(args.folder), key, key_origin=origin)
    for warning in result.warnings:
        warn(warning)
    print(
        f"verified: {result.files} files in {result.folder} match manifest.json, "
        f"signed by key sha256:{result.key_fingerprint[:16]} ({result.key_origin})"
    )
    return EXIT_OK


@command("verify")
def _add_verify(parser: argparse.ArgumentParser) -> None:
    """check an evidence folder against its signed manifest"""
    parser.add_argument("folder", metavar="DIR", help="evidence folder of a run")
    parser.add_argument(
        "--public-key",
        metavar="K",
        help="PEM Ed25519 public key (default: evidence.public_key in assay.yaml, "
        "else the key inside the folder, with a warning)",
    )
    parser.add_argument("--config", help="path of assay.yaml (default: ./assay.yaml)")
    parser.set_defaults(handler=verify_command)


# merge -----------------------------------------------------------------------


def _worst(statuses: list[str]) -> str:
    known = [s for s in statuses if s in WORST_FIRST]
    return min(known, key=WORST_FIRST.index) if known else "error"


def _unique(items: list[Any]) -> list[Any]:
    seen: set[str] = set()
    kept = []
    for item in items:
        key = json.dumps(item, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            kept.append(item)
    return kept


def _merge_control(entries: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """Join one control's entries from several shards: the worst status wins."""
    merged = dict(entries[0][1])
    merged["status"] = _worst([entry["status"] for _, entry in entries])
    merged["reasons"] = _unique([r for _, e in entries for r in e.get("reasons", [])])
    merged["criteria"] = _unique([c for _, e in entries for c in e.get("criteria", [])])
    merged["checks"] = _unique([c for _, e in entries for c in e.get("checks", [])])
    merged["findings"] = _unique([f for _, e in entries for f in e.get("findings", [])])
    observations: dict[str, Any] = {}
    for shard, entry in entries:
        for name, value in (entry.get("observations") or {}).items():
            if name in observations and observations[name] != value:
                name = f"{name} ({shard})"
            observations[name] = value
    merged["observations"] = observations
    return merged


def _parse_time(value: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if value else None
    except ValueError:
        return None


def _check_same_run(shards: list[tuple[Path, dict[str, Any]]]) -> None:
    """Reject shards of different commits or configurations."""
    for key, label in (("git", "commit"), ("config", "sha256")):
        values = {
            str(path): (evidence["run"].get(key) or {}).get(label)
            for path, evidence in shards
        }
        if len(set(values.values())) > 1:
            listing = ", ".join(f"{path} has {value}" for path, value in values.items())
            what = "git commit" if key == "git" else "assay.yaml checksum"
            raise UsageError(
                f"the shards differ in {what} ({listing}); merge only shards of "
                "one run of one commit"
            )


def _merged_run(shards: list[tuple[Path, dict[str, Any]]]) -> dict[str, Any]:
    first = shards[0][1]["run"]
    run: dict[str, Any] = {}
    for _, evidence in shards:
        for key, value in evidence["run"].items():
            run.setdefault(key, value)
    starts = [t for t in (_parse_time(e["run"].get("started")) for _, e in shards) if t]
    ends = [t for t in (_parse_time(e["run"].get("finished")) for _, e in shards) if t]
    if starts and ends:
        run["started"] = min(starts).isoformat(timespec="seconds")
        run["finished"] = max(ends).isoformat(timespec="seconds")
        run["duration_seconds"] = round((max(ends) - min(starts)).total_seconds(), 3)
    for key in ("catalog_errors", "canary_leaks"):
        joined = _unique([item for _, e in shards for item in e["run"].get(key) or []])
        if joined:
            run[key] = joined
        else:
            run.pop(key, None)
    run["git"] = first.get("git")
    run["shards"] = [
        {
            "folder": str(path),
            "started": evidence["run"].get("started"),
            "finished": evidence["run"].get("finished"),
            "controls": [c["id"] for c in evidence["controls"]],
            "self_made": bool((evidence["run"].get("signature") or {}).get("self_made")),
            "public_key_sha256": (evidence["run"].get("signature") or {}).get(
                "public_key_sha256"
            ),
        }
        for path, evidence in shards
    ]
    run["merged"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return run


def merge_evidence(shards: list[tuple[Path, dict[str, Any]]]) -> dict[str, Any]:
    """Join shard evidence documents into one; the caller signs the result."""
    _check_same_run(shards)
    by_id: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for path, evidence in shards:
        for entry in evidence["controls"]:
            by_id.setdefault(entry["id"], []).append((path.name, entry))
    controls = [_merge_control(entries) for entries in by_id.values()]
    summary: dict[str, int] = {}
    for entry in controls:
        summary[entry["status"]] = summary.get(entry["status"], 0) + 1
    criteria: dict[str, str] = {}
    for _, evidence in shards:
        for key, title in (evidence.get("criteria") or {}).items():
            criteria.setdefault(key, title)
    return {
        "schema": shards[0][1].get("schema", "assay-evidence/1"),
        "run": _merged_run(shards),
        "criteria": criteria,
        "summary": summary,
        "usage_errors": _unique(
            [m for _, e in shards for m in e.get("usage_errors") or []]
        ),
        "controls": controls,
    }


def _merge_junit(shards: list[Path], target: Path) -> None:
    root = ElementTree.Element("testsuites")
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for folder in shards:
        path = folder / "junit.xml"
        if not path.is_file():
            warn(f"{folder}: no junit.xml, so the merged junit.xml lacks its checks")
            continue
        try:
            tree = ElementTree.parse(path)
        except ElementTree.ParseError as exc:
            raise EvidenceError(f"{path}: not valid XML ({exc})") from None
        top = tree.getroot()
        suites = [top] if top.tag == "testsuite" else list(top.iter("testsuite"))
        for suite in suites:
            suite.set("name", f"{suite.get('name', 'pytest')} ({folder.name})")
            for key in totals:
                totals[key] += int(suite.get(key, "0") or 0)
            root.append(suite)
    for key, value in totals.items():
        root.set(key, str(value))
    ElementTree.ElementTree(root).write(target, encoding="utf-8", xml_declaration=True)


def merge_folders(
    shards: list[Path],
    out: Path,
    *,
    config: Config | None,
    public_key: Path | None = None,
    key_origin: str = "",
) -> dict[str, Any]:
    """Verify each shard, write the merged evidence folder to `out` and sign it."""
    from assay.manifest import load_signer, sign_folder, verify_folder
    from assay.reports import write_reports

    if len(shards) < 2:
        raise UsageError("merge needs at least two shard folders")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"{out}: already exists and is not empty; pick a new -o folder")
    loaded = []
    for folder in shards:
        if folder.resolve() == out.resolve():
            raise UsageError(f"{out}: the output folder is also a shard")
        evidence = read_evidence(folder)
        result = verify_folder(folder, public_key, key_origin=key_origin)
        for warning in result.warnings:
            warn(f"{folder}: {warning}")
        loaded.append((folder, evidence))

    signer = load_signer(config, report_dir=out)
    merged = merge_evidence(loaded)
    merged["run"]["signature"] = signer.describe()
    out.mkdir(parents=True, exist_ok=True)
    (out / "evidence.json").write_text(
        json.dumps(merged, indent=2, default=str) + "\n", "utf-8"
    )
    _merge_junit(shards, out / "junit.xml")
    write_reports(out, merged)
    sign_folder(out, signer)
    logger.info("merged %d shards into %s", len(shards), out)
    return merged


def merge_command(args: argparse.Namespace) -> int:
    config = optional_config(args)
    key, origin = public_key_for(args, config)
    out = Path(args.output)
    merged = merge_folders(
        [Path(folder) for folder in args.shards],
        out,
        config=config,
        public_key=key,
        key_origin=origin,
    )
    counts = ", ".join(f"{n} {s.replace('_', ' ')}" for s, n in merged["summary"].items())
    print(f"merged {len(args.shards)} shards into {out}: {counts}")
    if merged["run"]["signature"]["self_made"]:
        warn("no signing key configured, so the merged folder's signature is self-made")
    return EXIT_FAILED if any(c["status"] in FAILING for c in merged["controls"]) else EXIT_OK


@command("merge")
def _add_merge(parser: argparse.ArgumentParser) -> None:
    """join shard evidence folders from parallel jobs into one signed folder"""
    parser.add_argument("shards", nargs="+", metavar="DIR", help="shard evidence folders")
    parser.add_argument(
        "-o", "--output", required=True, metavar="OUT", help="new folder for the result"
    )
    parser.add_argument(
        "--public-key",
        metavar="K",
        help="PEM public key that signed the shards (default as for verify)",
    )
    parser.add_argument("--config", help="path of assay.yaml (default: ./assay.yaml)")
    parser.set_defaults(handler=merge_command)


# diff ------------------------------------------------------------------------


@dataclass
class Change:
    """One difference between a baseline and a new run."""

    kind: str
    subject: str
    text: str
    regression: bool = False
    finding: dict[str, Any] | None = None


@dataclass
class DiffResult:
    """Every change, in report order."""

    changes: list[Change] = field(default_factory=list)

    @property
    def regressions(self) -> list[Change]:
        return [c for c in self.changes if c.regression]


def _blocking(finding: dict[str, Any]) -> bool:
    return finding.get("level") in BLOCKING_LEVELS and not finding.get("waived")


def _finding_key(control_id: str, finding: dict[str, Any]) -> tuple:
    # Line numbers move when a file is edited, so they are compared, not keyed.
    return (
        control_id,
        finding.get("rule"),
        finding.get("file"),
        finding.get("table"),
        finding.get("policy"),
        finding.get("message"),
    )


def _indexed_findings(evidence: dict[str, Any]) -> dict[tuple, dict[str, Any]]:
    keyed: dict[tuple, dict[str, Any]] = {}
    for control in evidence["controls"]:
        ordered = sorted(control.get("findings", []), key=lambda f: f.get("line") or 0)
        for finding in ordered:
            key = _finding_key(control["id"], finding)
            occurrence = 0
            while key + (occurrence,) in keyed:
                occurrence += 1
            keyed[key + (occurrence,)] = finding
    return keyed


def _describe(key: tuple, finding: dict[str, Any]) -> str:
    control_id, rule = key[0], key[1]
    where = ""
    if finding.get("file"):
        where = f" at {finding['file']}:{finding.get('line') or '?'}"
    elif finding.get("table"):
        where = f" on {finding['table']}"
    return f"{control_id} {rule}{where}: {finding.get('message', '')}"


def _diff_controls(base: dict[str, Any], new: dict[str, Any]) -> list[Change]:
    old = {c["id"]: c for c in base["controls"]}
    now = {c["id"]: c for c in new["controls"]}
    changes = []
    for control_id, entry in now.items():
        status = entry["status"]
        if control_id not in old:
            changes.append(
                Change("control", control_id, f"appeared, {status}", status in FAILING)
            )
            continue
        before = old[control_id]["status"]
        if before != status:
            regression = before in PASSING and status in FAILING
            changes.append(Change("control", control_id, f"{before} -> {status}", regression))
    for control_id, entry in old.items():
        if control_id not in now:
            changes.append(
                Change("control", control_id, f"disappeared (was {entry['status']})")
            )
    return changes


def _diff_findings(base: dict[str, Any], new: dict[str, Any]) -> list[Change]:
    old = _indexed_findings(base)
    now = _indexed_findings(new)
    changes = []
    for key, finding in now.items():
        subject = _describe(key, finding)
        if key not in old:
            level = finding.get("level") + (" (waived)" if finding.get("waived") else "")
            changes.append(
                Change("finding", subject, f"appeared, {level}", _blocking(finding), finding)
            )
            continue
        before = old[key]
        notes = []
        if before.get("level") != finding.get("level"):
            notes.append(f"level {before.get('level')} -> {finding.get('level')}")
        if bool(before.get("waived")) != bool(finding.get("waived")):
            notes.append("now waived" if finding.get("waived") else "waiver removed")
        if before.get("line") != finding.get("line"):
            notes.append(f"line {before.get('line')} -> {finding.get('line')}")
        if notes:
            regression = _blocking(finding) and not _blocking(before)
            changes.append(
                Change("finding", subject, "changed: " + ", ".join(notes), regression, finding)
            )
    for key, finding in old.items():
        if key not in now:
            changes.append(
                Change(
                    "finding",
                    _describe(key, finding),
                    f"disappeared (was {finding.get('level')})",
                )
            )
    return changes


def diff_evidence(base: dict[str, Any], new: dict[str, Any]) -> DiffResult:
    """Compare two evidence documents: controls first, then findings.

    A regression is one of three changes. A control goes from passed, waived,
    attested or not applicable to failed, error or expired. A control appears
    that is already failing. A blocking finding is new or newly blocking.
    """
    return DiffResult(_diff_controls(base, new) + _diff_findings(base, new))


def _escape_annotation(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _render_diff(result: DiffResult, fmt: str) -> str:
    if fmt == "json":
        rows = [
            {
                "kind": c.kind,
                "subject": c.subject,
                "change": c.text,
                "regression": c.regression,
            }
            for c in result.changes
        ]
        return json.dumps(
            {"changes": rows, "regressions": len(result.regressions)}, indent=2
        ) + "\n"
    if fmt == "github":
        lines = []
        for change in result.regressions:
            params = []
            if change.finding and change.finding.get("file"):
                params.append(f"file={change.finding['file']}")
                if change.finding.get("line"):
                    params.append(f"line={change.finding['line']}")
            params.append("title=assay regression")
            message = _escape_annotation(f"{change.kind} {change.subject}: {change.text}")
            lines.append(f"::error {','.join(params)}::{message}")
        return "".join(line + "\n" for line in lines)
    lines = [
        f"{c.kind} {c.subject}: {c.text}" + ("  [regression]" if c.regression else "")
        for c in result.changes
    ]
    if not result.changes:
        lines.append("no change in controls or findings")
    lines.append(f"{len(result.regressions)} regression(s)")
    return "\n".join(lines) + "\n"


def diff_command(args: argparse.Namespace) -> int:
    base = read_evidence(Path(args.base))
    new = read_evidence(Path(args.new))
    result = diff_evidence(base, new)
    sys.stdout.write(_render_diff(result, args.format))
    return EXIT_FAILED if result.regressions else EXIT_OK


@command("diff")
def _add_diff(parser: argparse.ArgumentParser) -> None:
    """compare a run with a baseline run; exit 1 on a regression"""
    parser.add_argument("base", metavar="BASE", help="evidence folder of the baseline")
    parser.add_argument("new", metavar="NEW", help="evidence folder of the new run")
    parser.add_argument(
        "--format",
        choices=("text", "json", "github"),
        default="text",
        help="text for people, json for tools, github for workflow annotations",
    )
    parser.set_defaults(handler=diff_command)
