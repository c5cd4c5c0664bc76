"""Assay: security claims as controls, proved by pytest against real systems."""

from assay.errors import (
    AssayError,
    ConfigError,
    EvidenceError,
    MigrationError,
    ProvisionError,
    TargetError,
    UsageError,
)

__version__ = "0.1.0"

__all__ = [
    "AssayError",
    "ConfigError",
    "EvidenceError",
    "MigrationError",
    "ProvisionError",
    "TargetError",
    "UsageError",
    "__version__",
]
