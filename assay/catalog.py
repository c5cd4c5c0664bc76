"""The control catalog: controls/*.yaml and the SOC 2 criteria they map to.

A control names the checks that prove it as ``module::function`` (the module
under checks/ without ``test_`` stripping); a check names its control with
``@pytest.mark.control("TI-1")``. The plugin compares the two lists.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from assay.errors import ConfigError
from assay.yamlfile import load_yaml

__all__ = ["Catalog", "Control", "load_catalog", "STATUSES"]

STATUSES = (
    "passed",
    "failed",
    "error",
    "not_applicable",
    "waived",
    "attested",
    "expired",
)
SEVERITIES = ("critical", "high", "medium", "low")
CONTROL_ID = re.compile(r"^[A-Z]{2,4}-\d+$")
# Reports list the shipped families in this order; other families follow by name.
FAMILY_ORDER = (
    "tenant-isolation",
    "token-encryption",
    "webhooks",
    "data-handling",
    "operations",
)


@dataclass(frozen=True)
class Control:
    """One security claim, how severe its failure is and what proves it."""

    id: str
    title: str
    claim: str
    criteria: tuple[str, ...]
    severity: str
    type: str
    family: str
    checks: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()
    file: str = ""
    line: int = 0


@dataclass(frozen=True)
class Catalog:
    """Every control, in file order, plus the criteria titles."""

    controls: tuple[Control, ...]
    criteria: dict[str, str] = field(default_factory=dict)

    def get(self, control_id: str) -> Control | None:
        for control in self.controls:
            if control.id == control_id:
                return control
        return None

    def ids(self) -> list[str]:
        return [control.id for control in self.controls]

    def select(self, wanted: list[str] | None) -> "Catalog":
        """Return the catalog cut to `wanted` ids; unknown ids raise ConfigError."""
        if not wanted:
            return self
        unknown = [w for w in wanted if self.get(w) is None]
        if unknown:
            raise ConfigError(
                "unknown control",
                key="--controls",
                value=",".join(unknown),
                fix="Valid ids: " + ", ".join(self.ids()),
            )
        chosen = tuple(c for c in self.controls if c.id in wanted)
        return Catalog(controls=chosen, criteria=self.criteria)


def default_controls_dir() -> Path:
    """Return the folder of the catalog shipped with Assay."""
    return Path(str(resources.files("assay.controls")))


def _require(data: dict, key: str, file: str, line: int | None, where: str):
    if key not in data or data[key] in (None, "", []):
        raise ConfigError(
            "missing required key",
            file=file,
            line=line,
            key=f"{where}.{key}",
            value=None,
            fix=f"Add {key} to the control",
        )
    return data[key]


def load_catalog(folder: Path | None = None) -> Catalog:
    """Read every control family file and the criteria catalog in `folder`."""
    folder = folder or default_controls_dir()
    criteria_doc = load_yaml(folder / "criteria.yaml")
    criteria = {str(k): str(v) for k, v in criteria_doc.data["criteria"].items()}

    controls: list[Control] = []
    seen: dict[str, str] = {}
    for path in sorted(folder.glob("*.yaml")):
        if path.name == "criteria.yaml":
            continue
        doc = load_yaml(path, display=path.name)
        family = doc.data.get("family", path.stem)
        for index, item in enumerate(doc.data.get("controls") or []):
            line = doc.line(("controls", index))
            where = f"controls.{index}"
            control_id = _require(item, "id", doc.file, line, where)
            if not CONTROL_ID.match(control_id):
                raise ConfigError(
                    "invalid control id",
                    file=doc.file,
                    line=line,
                    key=f"{where}.id",
                    value=control_id,
                    fix="Use two to four capitals, a dash and a number, as TI-1",
                )
            if control_id in seen:
                raise ConfigError(
                    f"duplicate control id, also in {seen[control_id]}",
                    file=doc.file,
                    line=line,
                    key=f"{where}.id",
                    value=control_id,
                    fix="Give each control its own id",
                )
            seen[control_id] = doc.file
            for criterion in item.get("criteria") or []:
                if criterion not in criteria:
                    raise ConfigError(
                        "criterion not in criteria.yaml",
                        file=doc.file,
                        line=line,
                        key=f"{where}.criteria",
                        value=criterion,
                        fix="Add it to controls/criteria.yaml or fix the spelling",
                    )
            severity = item.get("severity", "high")
            if severity not in SEVERITIES:
                raise ConfigError(
                    "invalid severity",
                    file=doc.file,
                    line=line,
                    key=f"{where}.severity",
                    value=severity,
                    fix="Use one of " + ", ".join(SEVERITIES),
                )
            requires = item.get("requires") or ()
            if isinstance(requires, str):
                requires = (requires,)
            controls.append(
                Control(
                    id=control_id,
                    title=_require(item, "title", doc.file, line, where),
                    claim=_require(item, "claim", doc.file, line, where),
                    criteria=tuple(_require(item, "criteria", doc.file, line, where)),
                    severity=severity,
                    type=item.get("type", "automated"),
                    family=family,
                    checks=tuple(item.get("checks") or ()),
                    requires=tuple(requires),
                    file=doc.file,
                    line=line or 0,
                )
            )
    def rank(control: Control) -> tuple[int, str]:
        known = control.family in FAMILY_ORDER
        return (FAMILY_ORDER.index(control.family) if known else len(FAMILY_ORDER), control.family)

    controls.sort(key=rank)
    return Catalog(controls=tuple(controls), criteria=criteria)
