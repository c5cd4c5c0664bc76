"""Exceptions raised by Assay.

Every exception Assay raises on purpose derives from ``AssayError``::

    AssayError
    ├── UsageError            bad input from the user: exit status 2
    │   ├── ConfigError       assay.yaml, waivers.yaml or a control file is invalid
    │   └── MigrationError    a migration file cannot be read, parsed or applied
    ├── ProvisionError        no PostgreSQL server could be started or reached
    ├── TargetError           the application under test failed to start or answer
    └── EvidenceError         an evidence folder is missing, changed or unsigned

``UsageError`` and its subclasses are the user's to fix; the CLI prints them
without a traceback and exits with 2. The others make the run undecided.
"""

from __future__ import annotations

__all__ = [
    "AssayError",
    "ConfigError",
    "EvidenceError",
    "MigrationError",
    "ProvisionError",
    "TargetError",
    "UsageError",
]


class AssayError(Exception):
    """Root of every exception Assay raises on purpose."""

    exit_status = 1


class UsageError(AssayError):
    """Input the user must fix: a file, an option or a value."""

    exit_status = 2


class ConfigError(UsageError):
    """An invalid configuration value, located by file, line and key.

    The message reads ``FILE:LINE: KEY=VALUE: why. fix``, so an editor can jump
    to the line and the user knows what to write instead.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        key: str | None = None,
        value: object = None,
        fix: str | None = None,
    ) -> None:
        self.file = file
        self.line = line
        self.key = key
        self.value = value
        self.fix = fix
        self.reason = message
        super().__init__(self._format())

    def _format(self) -> str:
        where = ""
        if self.file:
            where = f"{self.file}:{self.line}: " if self.line else f"{self.file}: "
        what = ""
        if self.key is not None and self.value is None:
            # A missing key has no value worth printing as "=None".
            what = f"{self.key}: "
        elif self.key is not None:
            what = f"{self.key}={self.value!r}: "
        text = f"{where}{what}{self.reason}"
        if self.fix:
            text += f". {self.fix}" if not text.endswith(".") else f" {self.fix}"
        return text


class MigrationError(UsageError):
    """A migration statement that cannot be split, parsed or applied."""

    def __init__(self, message: str, *, file: str, line: int, fix: str = "") -> None:
        self.file = file
        self.line = line
        self.reason = message
        text = f"{file}:{line}: {message}"
        if fix:
            text += f". {fix}"
        super().__init__(text)


class ProvisionError(AssayError):
    """No PostgreSQL server could be started, reached or prepared."""


class TargetError(AssayError):
    """The application under test did not start, answer or stop as configured."""


class EvidenceError(AssayError):
    """An evidence folder that is incomplete, changed or not verifiable."""
