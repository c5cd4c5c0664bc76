"""Service-role client uses in source code, and the comment that justifies each.

A service-role client bypasses row level security, so each use must give its
reason inline: a comment holding the justification marker (``service-role:`` by
default) on the line of the use or in the comment lines just above it. The
default patterns find the Supabase clients built with the service-role key in
Python (supabase-py ``create_client``) and TypeScript or JavaScript
(supabase-js ``createClient``), and any mention of the key's environment
variable ``SUPABASE_SERVICE_ROLE_KEY`` in code.

Matches are made over the whole file, so a call spread over several lines is
one use, reported at the line where it starts. Matches that start inside a
comment are ignored, so the justification itself may name the key.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from assay.config import Config
from assay.errors import ConfigError

__all__ = [
    "DEFAULT_PATTERNS",
    "ServiceRoleScan",
    "ServiceRoleUse",
    "compile_patterns",
    "scan_config",
    "scan_paths",
]

logger = logging.getLogger(__name__)

DEFAULT_PATTERNS: dict[str, str] = {
    "supabase-py create_client with the service-role key": (
        r"\bcreate_client\s*\([^)]*?service[_-]?role"
    ),
    "supabase-js createClient with the service-role key": (
        r"\bcreateClient\s*\([^)]*?service[_-]?role"
    ),
    "SUPABASE_SERVICE_ROLE_KEY": r"\bSUPABASE_SERVICE_ROLE_KEY\b",
}

SKIPPED_FOLDERS = {
    ".git",
    "node_modules",
    "__pycache__",
    ".venv",
    "venv",
    ".next",
    "dist",
    "build",
    ".mypy_cache",
    ".pytest_cache",
}

# Line comment tokens by file suffix; C-like languages also have /* ... */.
_HASH = ("#",)
_SLASH = ("//", "/*")
_COMMENT_TOKENS: dict[str, tuple[str, ...]] = {
    ".py": _HASH,
    ".sh": _HASH,
    ".rb": _HASH,
    ".sql": ("--", "/*"),
    ".php": ("//", "/*", "#"),
}
_QUOTES = {".py": "'\"", ".sh": "'\"", ".rb": "'\""}


@dataclass(frozen=True)
class ServiceRoleUse:
    """One use of the service-role client and the justification found for it."""

    file: str
    line: int
    pattern: str
    code: str
    justification: str | None
    marker_line: int | None

    def to_dict(self) -> dict[str, object]:
        return {
            "file": self.file,
            "line": self.line,
            "pattern": self.pattern,
            "justification": self.justification,
        }


@dataclass(frozen=True)
class ServiceRoleScan:
    """Every use found and how many source files were read."""

    uses: tuple[ServiceRoleUse, ...]
    files: int

    def unjustified(self) -> list[ServiceRoleUse]:
        return [use for use in self.uses if not use.justification]


def compile_patterns(config: Config) -> dict[str, re.Pattern[str]]:
    """Return the default patterns (unless turned off) plus the configured ones."""
    section = config.service_role
    patterns: dict[str, re.Pattern[str]] = {}
    if section is None or section.defaults:
        for name, regex in DEFAULT_PATTERNS.items():
            patterns[name] = re.compile(regex, re.IGNORECASE)
    for index, regex in enumerate(section.patterns if section else ()):
        try:
            patterns[regex] = re.compile(regex)
        except re.error as exc:
            raise config.error(
                ("service_role", "patterns", index),
                regex,
                f"invalid regular expression: {exc}",
                "Write a Python regular expression, escaping ( and . as \\( and \\.",
            ) from None
    if not patterns:
        raise config.error(
            ("service_role", "defaults"),
            False,
            "no pattern to search for",
            "Keep defaults: true or list patterns",
        )
    return patterns


def _comment_tokens(suffix: str) -> tuple[str, ...]:
    return _COMMENT_TOKENS.get(suffix, _SLASH)


def _comment_start(line: str, suffix: str) -> int | None:
    """Return where a comment starts in `line`, ignoring tokens inside quotes.

    NOTE: quotes are tracked per line only, so a comment token inside a
    string that spans lines is taken for a comment.
    """
    tokens = _comment_tokens(suffix)
    quotes = _QUOTES.get(suffix, "'\"`")
    quote: str | None = None
    index = 0
    while index < len(line):
        char = line[index]
        if quote:
            if char == "\\":
                index += 2
                continue
            if char == quote:
                quote = None
        elif char in quotes:
            quote = char
        else:
            for token in tokens:
                if line.startswith(token, index):
                    return index
        index += 1
    return None


def _is_comment_line(line: str, suffix: str) -> bool:
    stripped = line.strip()
    if not stripped:
        return False
    if _comment_start(line, suffix) == len(line) - len(line.lstrip()):
        return True
    # The middle and end lines of a /* ... */ block.
    return "/*" in _comment_tokens(suffix) and stripped.startswith(("*", "*/"))


def _comment_text(line: str, suffix: str) -> str:
    start = _comment_start(line, suffix)
    text = line[start:] if start is not None else line.strip()
    text = text.strip().removesuffix("*/").strip()
    for token in (*_comment_tokens(suffix), "*"):
        if text.startswith(token):
            text = text[len(token) :]
            break
    return text.strip()


def _justification(
    lines: list[str], index: int, marker: str, lines_above: int, suffix: str
) -> tuple[str | None, int | None]:
    """Find the marker on line `index` or in the comment block just above it.

    Returns (justification text, 1-based marker line). The text runs from
    the marker to the end of its comment, joined with the comment lines that
    follow it down to the use.
    """
    line = lines[index]
    start = _comment_start(line, suffix)
    if start is not None and marker in line[start:]:
        after = line[start:].split(marker, 1)[1]
        return after.removesuffix("*/").strip(), index + 1

    first = index
    while (
        first > 0
        and index - first < lines_above
        and _is_comment_line(lines[first - 1], suffix)
    ):
        first -= 1
    for number in range(first, index):
        if marker in lines[number]:
            parts = [lines[number].split(marker, 1)[1].removesuffix("*/").strip()]
            parts += [_comment_text(lines[n], suffix) for n in range(number + 1, index)]
            return " ".join(p for p in parts if p).strip(), number + 1
    return None, None


def _source_files(paths: list[Path], extensions: tuple[str, ...]) -> Iterator[Path]:
    for path in paths:
        if path.is_file():
            yield path
            continue
        for folder, subfolders, names in os.walk(path):
            subfolders[:] = sorted(d for d in subfolders if d not in SKIPPED_FOLDERS)
            for name in sorted(names):
                if name.endswith(extensions):
                    yield Path(folder) / name


def _uses_in_text(
    text: str, patterns: dict[str, re.Pattern[str]], suffix: str
) -> list[tuple[int, int, str]]:
    """Return (start, end, pattern name) of each use, overlapping matches merged."""
    lines = text.splitlines(keepends=True)
    line_starts = [0]
    for line in lines:
        line_starts.append(line_starts[-1] + len(line))

    spans: list[tuple[int, int, str]] = []
    for name, pattern in patterns.items():
        for match in pattern.finditer(text):
            number = _line_index(line_starts, match.start())
            comment = _comment_start(lines[number], suffix)
            column = match.start() - line_starts[number]
            if comment is not None and comment <= column:
                continue
            spans.append((match.start(), match.end(), name))

    merged: list[tuple[int, int, str]] = []
    for start, end, name in sorted(spans):
        if merged and start < merged[-1][1]:
            last = merged[-1]
            merged[-1] = (last[0], max(last[1], end), last[2])
        else:
            merged.append((start, end, name))
    return merged


def _line_index(line_starts: list[int], offset: int) -> int:
    low, high = 0, len(line_starts) - 2
    while low < high:
        middle = (low + high + 1) // 2
        if line_starts[middle] <= offset:
            low = middle
        else:
            high = middle - 1
    return low


def scan_paths(
    paths: list[Path],
    patterns: dict[str, re.Pattern[str]],
    *,
    marker: str,
    lines_above: int,
    extensions: tuple[str, ...],
    root: Path,
) -> ServiceRoleScan:
    """Find every service-role use under `paths` and the justification of each."""
    uses: list[ServiceRoleUse] = []
    files = 0
    for path in _source_files(paths, extensions):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            logger.warning("skipped unreadable source file %s: %s", path, exc)
            continue
        files += 1
        suffix = path.suffix.lower()
        lines = text.splitlines()
        line_starts = [0]
        for line in text.splitlines(keepends=True):
            line_starts.append(line_starts[-1] + len(line))
        display = os.path.relpath(path, root)
        for start, _, name in _uses_in_text(text, patterns, suffix):
            index = _line_index(line_starts, start)
            justification, marker_line = _justification(
                lines, index, marker, lines_above, suffix
            )
            uses.append(
                ServiceRoleUse(
                    file=display,
                    line=index + 1,
                    pattern=name,
                    code=lines[index].strip(),
                    justification=justification,
                    marker_line=marker_line,
                )
            )
    logger.info("found %d service-role uses in %d source files", len(uses), files)
    return ServiceRoleScan(uses=tuple(uses), files=files)


def scan_config(config: Config) -> ServiceRoleScan:
    """Scan the folders named by ``service_role.paths``; missing ones raise ConfigError."""
    section = config.service_role
    if section is None:
        raise ConfigError(
            "no service_role section", file=config.file, fix="Add service_role: paths"
        )
    if not section.paths:
        raise config.error(
            ("service_role", "paths"),
            [],
            "no source folder to scan",
            "List the folders holding application code, e.g. paths: [src]",
        )
    paths = []
    for index, relative in enumerate(section.paths):
        path = config.path(relative)
        if not path.exists():
            raise config.error(
                ("service_role", "paths", index),
                relative,
                f"not found ({path})",
                "Give a folder or file relative to assay.yaml",
            )
        paths.append(path)
    if not section.marker.strip():
        raise config.error(
            ("service_role", "marker"),
            section.marker,
            "the justification marker is empty",
            "Use a word no other comment holds, e.g. 'service-role:'",
        )
    if section.lines_above < 0:
        raise config.error(
            ("service_role", "lines_above"),
            section.lines_above,
            "must be 0 or more",
            "Give how many comment lines above a use may hold the justification",
        )
    extensions = tuple(e if e.startswith(".") else f".{e}" for e in section.extensions)
    return scan_paths(
        paths,
        compile_patterns(config),
        marker=section.marker,
        lines_above=section.lines_above,
        extensions=extensions,
        root=config.root,
    )
