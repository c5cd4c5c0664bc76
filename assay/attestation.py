"""Attested controls: an evidence file, its owner, and how old it may be.

Some claims (the database region, backups, the sub-processor list) cannot be
proved by a probe; a person collects evidence and Assay checks that it is
there and fresh. The status of one attestation is:

- failed: the evidence file is missing or empty;
- expired: it was collected more than ``max_age_days`` ago;
- attested: it is present and fresh (its SHA-256 goes into the evidence);
- error: its collection date cannot be known.

The collection date comes from, in order: ``collected:`` in assay.yaml; a
sidecar file FILE.attestation.yaml holding ``collected: YYYY-MM-DD``; the
date of the last git commit that changed the file. The file's modification
time is never used, because a fresh clone or checkout sets it to now and
would make any evidence look fresh.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from assay.config import AttestedConfig, Config
from assay.errors import ConfigError
from assay.yamlfile import load_yaml

__all__ = [
    "SIDECAR_SUFFIX",
    "Attestation",
    "attested_entry",
    "evaluate",
    "today_utc",
]

logger = logging.getLogger(__name__)

SIDECAR_SUFFIX = ".attestation.yaml"
_SIDECAR_KEYS = {"collected", "collected_by", "note"}


@dataclass(frozen=True)
class Attestation:
    """The verdict on one attested control's evidence, with what it rests on."""

    control: str
    file: str
    owner: str
    max_age_days: int
    status: str
    reason: str
    sha256: str | None = None
    size: int | None = None
    collected: date | None = None
    date_source: str | None = None
    age_days: int | None = None

    def to_dict(self) -> dict[str, Any]:
        expires = (
            (self.collected + timedelta(days=self.max_age_days)).isoformat()
            if self.collected
            else None
        )
        return {
            "control": self.control,
            "file": self.file,
            "owner": self.owner,
            "status": self.status,
            "sha256": self.sha256,
            "bytes": self.size,
            "collected": self.collected.isoformat() if self.collected else None,
            "date_source": self.date_source,
            "age_days": self.age_days,
            "max_age_days": self.max_age_days,
            "expires": expires,
        }


def today_utc() -> date:
    return datetime.now(UTC).date()


def attested_entry(config: Config, control: str) -> tuple[int, AttestedConfig] | None:
    """Return (index, entry) of the ``attested`` entry naming `control`, if any."""
    found = [(i, e) for i, e in enumerate(config.attested) if e.control == control]
    if len(found) > 1:
        raise config.error(
            ("attested", found[1][0], "control"),
            control,
            "a second entry for the same control",
            "Keep one evidence file per attested control",
        )
    return found[0] if found else None


def _as_date(value: object) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            return None
    return None


def _configured_date(config: Config, index: int, entry: AttestedConfig) -> date | None:
    if entry.collected is None:
        return None
    collected = _as_date(entry.collected)
    if collected is None:
        raise config.error(
            ("attested", index, "collected"),
            entry.collected,
            "not a date",
            "Write the collection date as YYYY-MM-DD",
        )
    return collected


def _sidecar_date(sidecar: Path, display: str) -> date | None:
    if not sidecar.is_file():
        return None
    document = load_yaml(sidecar, display=display)
    data = document.data
    if not isinstance(data, dict) or "collected" not in data:
        raise ConfigError(
            "missing required key",
            file=display,
            line=document.line(()),
            key="collected",
            value=None,
            fix="Write collected: YYYY-MM-DD, the date the evidence was collected",
        )
    unknown = sorted(set(data) - _SIDECAR_KEYS)
    if unknown:
        raise ConfigError(
            "unknown key",
            file=display,
            line=document.line((unknown[0],)),
            key=unknown[0],
            value=data[unknown[0]],
            fix="Valid keys: " + ", ".join(sorted(_SIDECAR_KEYS)),
        )
    collected = _as_date(data["collected"])
    if collected is None:
        raise ConfigError(
            "not a date",
            file=display,
            line=document.line(("collected",)),
            key="collected",
            value=data["collected"],
            fix="Write the collection date as YYYY-MM-DD",
        )
    return collected


def _git_date(path: Path) -> date | None:
    """Return the date of the last commit that changed `path`, or None."""
    try:
        done = subprocess.run(
            ["git", "log", "-1", "--format=%cI", "--", path.name],
            cwd=path.parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        logger.warning("could not ask git for the date of %s: %s", path, exc)
        return None
    stamp = done.stdout.strip()
    if done.returncode != 0 or not stamp:
        return None
    return datetime.fromisoformat(stamp).astimezone(UTC).date()


def _collection_date(
    config: Config, index: int, entry: AttestedConfig, path: Path
) -> tuple[date | None, str | None]:
    configured = _configured_date(config, index, entry)
    if configured is not None:
        file, line = config.where("attested", index, "collected")
        return configured, f"{file}:{line}" if line else file
    sidecar = path.with_name(path.name + SIDECAR_SUFFIX)
    sidecar_display = os.path.relpath(sidecar, config.root)
    from_sidecar = _sidecar_date(sidecar, sidecar_display)
    if from_sidecar is not None:
        return from_sidecar, sidecar_display
    from_git = _git_date(path)
    if from_git is not None:
        return from_git, "last git commit of the file"
    return None, None


def _check_entry(config: Config, index: int, entry: AttestedConfig) -> None:
    if entry.max_age_days <= 0:
        raise config.error(
            ("attested", index, "max_age_days"),
            entry.max_age_days,
            "must be a positive number of days",
            "Give how many days the evidence stays valid, e.g. 90",
        )
    if not entry.owner.strip():
        raise config.error(
            ("attested", index, "owner"),
            entry.owner,
            "an attestation needs an owner",
            "Name the person or team who collects this evidence",
        )


def evaluate(
    config: Config, index: int, entry: AttestedConfig, *, today: date | None = None
) -> Attestation:
    """Decide one attestation: failed, expired, attested or error (date unknown)."""
    _check_entry(config, index, entry)
    today = today or today_utc()
    path = config.path(entry.file)
    display = os.path.relpath(path, config.root)
    base = {
        "control": entry.control,
        "file": display,
        "owner": entry.owner,
        "max_age_days": entry.max_age_days,
    }
    if not path.is_file():
        what = "a folder, not a file" if path.is_dir() else "not found"
        return Attestation(
            **base, status="failed", reason=f"evidence file {display} is {what}"
        )
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    base.update(sha256=digest, size=len(data))
    if not data.strip():
        return Attestation(
            **base, status="failed", reason=f"evidence file {display} is empty"
        )

    collected, source = _collection_date(config, index, entry, path)
    if collected is None:
        return Attestation(
            **base,
            status="error",
            reason=(
                f"the collection date of {display} is unknown: it has no "
                f"collected: date in {config.file}, no {path.name}{SIDECAR_SUFFIX} "
                "sidecar and no git commit"
            ),
        )
    age = (today - collected).days
    base.update(collected=collected, date_source=source, age_days=age)
    if age < 0:
        return Attestation(
            **base,
            status="error",
            reason=f"{display} was collected on {collected}, a date in the future ({source})",
        )
    if age > entry.max_age_days:
        return Attestation(
            **base,
            status="expired",
            reason=(
                f"{display} was collected on {collected} ({source}), {age} days ago; "
                f"its maximum age is {entry.max_age_days} days. {entry.owner} must "
                "collect it again"
            ),
        )
    return Attestation(
        **base,
        status="attested",
        reason=(
            f"{display} collected on {collected} ({source}), {age} of "
            f"{entry.max_age_days} days old, owner {entry.owner}"
        ),
    )
