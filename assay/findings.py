"""Findings: what a check saw that breaks, or may break, a claim.

A finding is plain data so it can travel from an xdist worker to the
controller inside a test report's ``user_properties`` and land unchanged in
every evidence file.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

__all__ = ["Finding", "dump_findings", "load_findings"]

# error: breaks the claim. undecided: the harness could not tell, which makes
# the control an error, never a pass. warning and info: reported, not failing.
LEVELS = ("error", "undecided", "warning", "info")


@dataclass(frozen=True)
class Finding:
    """One observation against a control, located as precisely as known."""

    control: str
    rule: str
    message: str
    level: str = "error"
    file: str | None = None
    line: int | None = None
    table: str | None = None
    policy: str | None = None
    source: str = "static"
    fix: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    waived: bool = False
    waiver: dict[str, Any] | None = None

    @property
    def blocking(self) -> bool:
        """True when this finding fails (error) or undecides (undecided) a control."""
        return self.level in ("error", "undecided") and not self.waived

    def where(self) -> str:
        """Return "file:line" (or the table) for a terminal line."""
        if self.file and self.line:
            return f"{self.file}:{self.line}"
        if self.file:
            return self.file
        return self.table or ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Finding":
        return cls(**data)

    def with_waiver(self, waiver: dict[str, Any]) -> "Finding":
        return replace(self, waived=True, waiver=waiver)


def dump_findings(findings: list[Finding]) -> str:
    return json.dumps([f.to_dict() for f in findings], default=str)


def load_findings(text: str) -> list[Finding]:
    return [Finding.from_dict(item) for item in json.loads(text)]
