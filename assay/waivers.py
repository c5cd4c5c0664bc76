"""Waivers: a governed, dated acceptance of a known gap, kept as data.

``waivers.yaml`` sits next to assay.yaml (or where ``waivers:`` in assay.yaml
points) and lists waivers::

    waivers:
      - control: DM-3
        scope: {table: public.legacy_payments}
        reason: Read-only archive, dropped when the migration in PLAT-12 ships
        approver: security@acme.example
        expires: 2025-03-31

A scope names exactly one of ``table``, ``file``, ``endpoint`` or
``provider``. A table is schema-qualified, and ``public.`` is assumed when
the schema is missing. A file is a path relative to the project root, and an
endpoint is ``METHOD /path`` or ``/path``. A finding is in
scope when its control matches and its ``table``, ``file``,
``details["endpoint"]`` or ``details["provider"]`` equals the scope value.

A waived finding keeps its place in every report, marked ``waived``. An
expired waiver waives nothing and fails the control it names; a waiver that
matched no finding of a control that ran fails that control too, so stale
waivers do not pile up. A malformed file is a ConfigError (exit status 2)
naming the file and line.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from assay.config import Config
from assay.errors import ConfigError
from assay.findings import Finding
from assay.yamlfile import LocatedYaml, load_yaml

__all__ = [
    "SCOPE_KINDS",
    "WAIVERS_FILE",
    "Waiver",
    "WaiverSet",
    "load_waivers",
    "review_waivers",
]

logger = logging.getLogger(__name__)

WAIVERS_FILE = "waivers.yaml"
SCOPE_KINDS = ("table", "file", "endpoint", "provider")
_KEYS = ("control", "scope", "reason", "approver", "expires")
_CONTROL_ID = re.compile(r"^[A-Z]{2,4}-\d+$")
# Control statuses that mean every check of the control ran to its verdict,
# so a waiver that matched nothing there is truly unused.
_DECIDED = ("passed", "failed", "waived")


def _normal_table(name: str) -> str:
    name = name.strip().strip('"')
    return name if "." in name else f"public.{name}"


def _normal_file(name: str) -> str:
    return str(PurePosixPath(name.replace(os.sep, "/"))).removeprefix("./")


def _normal_endpoint(name: str) -> tuple[str | None, str]:
    parts = name.strip().split(None, 1)
    if len(parts) == 2:
        return parts[0].upper(), parts[1]
    return None, parts[0] if parts else ""


@dataclass(frozen=True)
class Waiver:
    """One entry of waivers.yaml, with the file and line it was read from."""

    control: str
    scope: str
    value: str
    reason: str
    approver: str
    expires: date
    file: str
    line: int

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    def expired(self, today: date) -> bool:
        """True once the expiry date has passed; a waiver is valid on that day."""
        return self.expires < today

    def covers(self, finding: Finding) -> bool:
        """True when `finding` belongs to this waiver's control and scope."""
        if finding.control != self.control:
            return False
        if self.scope == "table":
            return bool(finding.table) and _normal_table(
                finding.table
            ) == _normal_table(self.value)
        if self.scope == "file":
            return bool(finding.file) and _normal_file(finding.file) == _normal_file(
                self.value
            )
        if self.scope == "endpoint":
            seen = finding.details.get("endpoint")
            if not isinstance(seen, str):
                return False
            method, path = _normal_endpoint(self.value)
            seen_method, seen_path = _normal_endpoint(seen)
            return path == seen_path and (method is None or method == seen_method)
        return finding.details.get("provider") == self.value

    def to_dict(self) -> dict[str, Any]:
        return {
            "control": self.control,
            "scope": {self.scope: self.value},
            "reason": self.reason,
            "approver": self.approver,
            "expires": self.expires.isoformat(),
            "file": self.file,
            "line": self.line,
        }


class WaiverSet:
    """The loaded waivers, and the function that waives findings in scope."""

    def __init__(self, waivers: Iterable[Waiver] = (), *, today: date | None = None):
        self.waivers = tuple(waivers)
        self.today = today or datetime.now(UTC).date()

    def __len__(self) -> int:
        return len(self.waivers)

    def waive(self, finding: Finding) -> Finding:
        """Return `finding` marked waived by the first valid waiver covering it."""
        if finding.waived or finding.level not in ("error", "undecided"):
            return finding
        for waiver in self.waivers:
            if waiver.covers(finding) and not waiver.expired(self.today):
                return finding.with_waiver(waiver.to_dict())
        return finding


def _fail(document: LocatedYaml, path: tuple, value: object, reason: str, fix: str):
    return ConfigError(
        reason,
        file=document.file,
        line=document.line(path),
        key=".".join(map(str, path)),
        value=value,
        fix=fix,
    )


def _text(document: LocatedYaml, entry: dict, path: tuple, key: str, fix: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value.strip():
        raise _fail(
            document, path + (key,), value, f"{key} must be a non-empty text", fix
        )
    return value.strip()


def _expiry(document: LocatedYaml, entry: dict, path: tuple) -> date:
    value = entry.get("expires")
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise _fail(
        document,
        path + ("expires",),
        value,
        "expires must be a date",
        "Write the last day the waiver is valid as YYYY-MM-DD",
    )


def _scope(document: LocatedYaml, entry: dict, path: tuple) -> tuple[str, str]:
    scope = entry.get("scope")
    fix = "Write scope: {table: public.NAME}, or one of " + ", ".join(SCOPE_KINDS)
    if not isinstance(scope, dict) or len(scope) != 1:
        raise _fail(
            document, path + ("scope",), scope, "scope must name exactly one thing", fix
        )
    kind, value = next(iter(scope.items()))
    if kind not in SCOPE_KINDS:
        raise _fail(document, path + ("scope", kind), kind, "unknown scope kind", fix)
    if not isinstance(value, str) or not value.strip():
        raise _fail(
            document,
            path + ("scope", kind),
            value,
            "the scope value must be a text",
            fix,
        )
    return kind, value.strip()


def _parse_entry(
    document: LocatedYaml, entry: Any, index: int, known: set[str] | None
) -> Waiver:
    path = ("waivers", index)
    if not isinstance(entry, dict):
        raise _fail(
            document,
            path,
            entry,
            "a waiver must be a mapping",
            "Give " + ", ".join(_KEYS),
        )
    for key in entry:
        if key not in _KEYS:
            raise _fail(
                document,
                path + (key,),
                entry[key],
                "unknown key",
                "Valid keys: " + ", ".join(_KEYS),
            )
    for key in _KEYS:
        if key not in entry:
            raise _fail(
                document, path, None, f"missing required key {key}", f"Add {key}:"
            )
    control = _text(document, entry, path, "control", "Name a control id, e.g. DM-3")
    if not _CONTROL_ID.match(control) or (known is not None and control not in known):
        hint = f"Known controls: {', '.join(sorted(known))}" if known else "e.g. DM-3"
        raise _fail(document, path + ("control",), control, "unknown control", hint)
    kind, value = _scope(document, entry, path)
    return Waiver(
        control=control,
        scope=kind,
        value=value,
        reason=_text(document, entry, path, "reason", "Say why the gap is accepted"),
        approver=_text(document, entry, path, "approver", "Name who approved it"),
        expires=_expiry(document, entry, path),
        file=document.file,
        line=document.line(path) or 1,
    )


def waivers_path(config: Config) -> tuple[Path, bool]:
    """Return the waivers file and whether assay.yaml named it explicitly."""
    if config.waivers:
        return config.path(config.waivers), True
    return config.root / WAIVERS_FILE, False


def load_waivers(
    config: Config, *, known_controls: Iterable[str] | None = None
) -> WaiverSet:
    """Read the waivers file; a malformed one raises ConfigError with file and line."""
    path, named = waivers_path(config)
    if not path.is_file():
        if named:
            raise config.error(
                ("waivers",),
                config.waivers,
                f"waivers file not found ({path})",
                "Point waivers: at an existing file, or remove the key",
            )
        return WaiverSet()
    display = os.path.relpath(path)
    document = load_yaml(path, display=display)
    data = document.data
    if data is None:
        return WaiverSet()
    if not isinstance(data, dict) or set(data) != {"waivers"}:
        raise _fail(
            document,
            (),
            data if not isinstance(data, dict) else sorted(data),
            "expected one key, waivers, holding a list",
            "Start the file with waivers: and list the waivers under it",
        )
    entries = data["waivers"] or []
    if not isinstance(entries, list):
        raise _fail(
            document, ("waivers",), entries, "expected a list", "List waivers with -"
        )
    known = set(known_controls) if known_controls is not None else None
    waivers = [_parse_entry(document, e, i, known) for i, e in enumerate(entries)]
    logger.info("loaded %d waiver(s) from %s", len(waivers), display)
    return WaiverSet(waivers)


def _waiver_finding(waiver: Waiver, rule: str, message: str, fix: str) -> Finding:
    return Finding(
        control=waiver.control,
        rule=rule,
        message=message,
        file=waiver.file,
        line=waiver.line,
        source="waivers",
        fix=fix,
        details={"waiver": waiver.to_dict()},
    )


def review_waivers(
    waivers: WaiverSet, results: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Fail the controls named by expired or unused waivers.

    `results` are the control results of a run, changed in place. Returns
    (results, one row per waiver for the evidence).
    """
    by_id = {result["id"]: result for result in results}
    rows = []
    for waiver in waivers.waivers:
        result = by_id.get(waiver.control)
        used = 0
        if result is not None:
            used = sum(
                1
                for f in result["findings"]
                if f.get("waived")
                and (f.get("waiver") or {}).get("file") == waiver.file
                and (f.get("waiver") or {}).get("line") == waiver.line
            )
        state = _state(waiver, waivers.today, result, used)
        rows.append({**waiver.to_dict(), "status": state, "findings_waived": used})
        if state == "expired":
            _fail_control(
                result,
                _waiver_finding(
                    waiver,
                    "waiver-expired",
                    f"the waiver for {waiver.control} ({waiver.scope} {waiver.value}) "
                    f"expired on {waiver.expires}, so it waives nothing",
                    "Fix the findings it covered, or renew it with a new expiry "
                    "and approval",
                ),
            )
        elif state == "unused":
            _fail_control(
                result,
                _waiver_finding(
                    waiver,
                    "waiver-unused",
                    f"the waiver for {waiver.control} ({waiver.scope} {waiver.value}) "
                    "matched no finding in this run",
                    "Remove the waiver, or correct its scope to the finding's "
                    f"{waiver.scope}",
                ),
            )
    return results, rows


def _state(waiver: Waiver, today: date, result: dict | None, used: int) -> str:
    if result is None:
        return "not-selected"
    if waiver.expired(today):
        return "expired"
    if used:
        return "applied"
    if result["status"] in _DECIDED:
        return "unused"
    return "not-evaluated"


def _fail_control(result: dict[str, Any] | None, finding: Finding) -> None:
    if result is None:
        return
    result["findings"].append(finding.to_dict())
    result["reasons"].append(f"{finding.file}:{finding.line}: {finding.message}")
    result["status"] = "failed"
