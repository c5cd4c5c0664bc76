"""Canaries: unique marker values Assay plants, and the search for them.

A check that plants a canary (a token, a key, a note text) registers it. The
registry lives in a private folder named by ``ASSAY_CANARY_DIR`` so xdist
workers and the controller share it without the values ever travelling in a
test report (reports end up in junit.xml). Before a run finishes, the
controller searches every evidence file for every registered canary in each
encoding a leak could take.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

__all__ = [
    "Canary",
    "encodings",
    "find_canaries",
    "new_canary",
    "register",
    "registered",
    "registry_dir",
]

ENV = "ASSAY_CANARY_DIR"
_lock = threading.Lock()


@dataclass(frozen=True)
class Canary:
    """A planted value and what it stands for (never the value itself in reports)."""

    value: str
    kind: str
    label: str

    def redacted(self) -> str:
        return f"<{self.kind} canary {self.label}>"


def new_canary(kind: str, label: str, *, prefix: str = "", length: int = 24) -> Canary:
    """Make and register a canary: `prefix` plus random url-safe characters."""
    value = prefix + secrets.token_urlsafe(length)[:length]
    canary = Canary(value=value, kind=kind, label=label)
    register(canary)
    return canary


def registry_dir() -> Path:
    """The shared registry folder, created (and named in the environment) on first use."""
    folder = os.environ.get(ENV)
    if not folder:
        folder = tempfile.mkdtemp(prefix="assay-canaries-")
        os.environ[ENV] = folder
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    return path


def register(canary: Canary | str, *, kind: str = "value", label: str = "") -> None:
    """Record a planted value so the run's own output is searched for it."""
    if isinstance(canary, str):
        canary = Canary(value=canary, kind=kind, label=label or kind)
    path = registry_dir() / f"{os.getpid()}.jsonl"
    line = json.dumps({"value": canary.value, "kind": canary.kind, "label": canary.label})
    with _lock, path.open("a", encoding="utf-8") as handle:
        handle.write(line + "\n")


def registered() -> list[Canary]:
    """Every canary registered by any process of this run."""
    folder = os.environ.get(ENV)
    if not folder or not Path(folder).is_dir():
        return []
    seen: dict[str, Canary] = {}
    for path in sorted(Path(folder).glob("*.jsonl")):
        for line in path.read_text("utf-8").splitlines():
            if line.strip():
                item = json.loads(line)
                seen.setdefault(item["value"], Canary(**item))
    return list(seen.values())


def encodings(value: str | bytes) -> dict[str, bytes]:
    """Return the byte strings a leaked `value` could appear as in a file or log."""
    raw = value.encode() if isinstance(value, str) else value
    forms = {
        "raw": raw,
        "hex": raw.hex().encode(),
        "HEX": raw.hex().upper().encode(),
        "base64": base64.b64encode(raw),
        "base64url": base64.urlsafe_b64encode(raw).rstrip(b"="),
        "base64-unpadded": base64.b64encode(raw).rstrip(b"="),
        "bytes-repr": repr(raw).encode(),
        "byte-list": str(list(raw)).encode(),
        "json-escaped": json.dumps(raw.decode("latin-1"))[1:-1].encode(),
    }
    # Very short values would match by chance; keep only forms long enough.
    return {name: form for name, form in forms.items() if len(form) >= 8}


def find_canaries(
    paths: Iterable[Path], canaries: Iterable[Canary]
) -> list[tuple[Path, Canary, str]]:
    """Search files for each canary in every encoding; return (file, canary, form)."""
    patterns = [(c, name, form) for c in canaries for name, form in encodings(c.value).items()]
    hits = []
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError:
            continue
        for canary, name, form in patterns:
            if form in data:
                hits.append((path, canary, name))
    return hits
