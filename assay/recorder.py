"""What a check hands back: findings, observations and its verdict.

Checks never decide their own status by returning early or skipping. They add
findings to a ``Recorder`` and end with ``verdict()``, which fails on any
blocking finding and refuses to pass when nothing was examined.
"""

from __future__ import annotations

import json
from typing import Any, Callable

import pytest

from assay.findings import Finding

__all__ = [
    "Attested",
    "ControlFailed",
    "Expired",
    "NotApplicable",
    "Recorder",
    "Undecided",
]

FINDINGS_KEY = "assay_findings"
OBSERVATIONS_KEY = "assay_observations"


class ControlFailed(AssertionError):
    """A check saw the claim broken; the control fails."""


class Undecided(Exception):
    """A check could not decide; the control is an error, never a pass."""


class Attested(Exception):
    """An attested control's evidence is present and fresh; the control is attested."""


class Expired(Exception):
    """An attested control's evidence is older than its maximum age."""


class NotApplicable(pytest.skip.Exception):
    """The target has no part this control is about, with the reason.

    It derives from pytest's skip exception so JUnit shows a skip, while the
    plugin tells it apart from a bare ``pytest.skip`` (reported as an error).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(msg=reason, allow_module_level=False)
        self.reason = reason


class Recorder:
    """Collects one check's findings and observations for the evidence."""

    def __init__(
        self,
        control: str,
        properties: list,
        *,
        waive: Callable[[Finding], Finding] | None = None,
    ) -> None:
        self.control = control
        self.findings: list[Finding] = []
        self.observations: dict[str, Any] = {}
        self.examined: dict[str, int] = {}
        self._properties = properties
        self._waive = waive or (lambda finding: finding)

    def add(self, finding: Finding) -> Finding:
        finding = self._waive(finding)
        self.findings.append(finding)
        self._publish()
        return finding

    def extend(self, findings: list[Finding]) -> None:
        for finding in findings:
            self.add(finding)

    def observe(self, key: str, value: Any) -> None:
        """Keep an observation (a matrix, an inventory) for evidence.json."""
        self.observations[key] = value
        self._publish()

    def examined_count(self, what: str, count: int) -> None:
        """Record how many `what` the check examined, for the no-trivial-pass rule."""
        self.examined[what] = self.examined.get(what, 0) + count
        self.observations["examined"] = dict(self.examined)
        self._publish()

    def _publish(self) -> None:
        # user_properties travel with the report to the xdist controller.
        kept = [p for p in self._properties if p[0] not in (FINDINGS_KEY, OBSERVATIONS_KEY)]
        kept.append(
            (FINDINGS_KEY, json.dumps([f.to_dict() for f in self.findings], default=str))
        )
        kept.append((OBSERVATIONS_KEY, json.dumps(self.observations, default=str)))
        self._properties[:] = kept

    def verdict(self) -> None:
        """Fail on blocking findings; raise Undecided when nothing was examined."""
        errors = [f for f in self.findings if f.blocking and f.level == "error"]
        undecided = [f for f in self.findings if f.blocking and f.level == "undecided"]
        if errors:
            raise ControlFailed(_summarise(self.control, errors))
        if undecided:
            raise Undecided(_summarise(self.control, undecided))
        if not self.examined or not any(self.examined.values()):
            raise Undecided(
                f"{self.control}: the check found nothing to examine, so it proved "
                "nothing; check the configuration points at the right target"
            )


def _summarise(control: str, findings: list[Finding]) -> str:
    lines = [f"{control}: {len(findings)} finding(s)"]
    for finding in findings[:20]:
        where = finding.where()
        prefix = f"{where}: " if where else ""
        lines.append(f"  {prefix}{finding.message}")
    if len(findings) > 20:
        lines.append(f"  ... and {len(findings) - 20} more in evidence.json")
    return "\n".join(lines)
