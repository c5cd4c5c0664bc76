"""OP-1 to OP-3: operational claims attested by evidence files of a limited age."""

from __future__ import annotations

import pytest

from assay.attestation import attested_entry, evaluate
from assay.config import Config
from assay.findings import Finding
from assay.recorder import Attested, Expired, Recorder, Undecided


def _attest(evidence: Recorder, config: Config, control: str) -> None:
    """Record the attestation of `control` and end with its status."""
    entry = attested_entry(config, control)
    if entry is None:
        raise Undecided(
            f"{control} is an attested control but no entry of `attested` in "
            f"{config.file} names it; add control: {control} with its evidence "
            "file, owner and max_age_days"
        )
    index, settings = entry
    attestation = evaluate(config, index, settings)
    evidence.observe("attestation", attestation.to_dict())
    file, line = config.where("attested", index)
    if attestation.status == "failed":
        evidence.examined_count("evidence files", 1)
        evidence.add(
            Finding(
                control=control,
                rule="attestation-missing",
                message=attestation.reason,
                file=attestation.file,
                source="attestation",
                fix=(
                    f"{settings.owner} must collect the evidence into "
                    f"{attestation.file} (named at {file}:{line})"
                ),
                details={"owner": settings.owner},
            )
        )
        evidence.verdict()
    if attestation.status == "error":
        raise Undecided(attestation.reason)
    if attestation.status == "expired":
        raise Expired(attestation.reason)
    raise Attested(attestation.reason)


@pytest.mark.control("OP-1")
def test_region_and_disk_encryption_attested(evidence, assay_config: Config):
    _attest(evidence, assay_config, "OP-1")


@pytest.mark.control("OP-2")
def test_backups_attested(evidence, assay_config: Config):
    _attest(evidence, assay_config, "OP-2")


@pytest.mark.control("OP-3")
def test_subprocessors_attested(evidence, assay_config: Config):
    _attest(evidence, assay_config, "OP-3")
