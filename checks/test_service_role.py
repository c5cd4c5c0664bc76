"""TI-6: every use of the service-role client carries an inline justification."""

from __future__ import annotations

import pytest

from assay.config import Config
from assay.findings import Finding
from assay.service_role import scan_config


@pytest.mark.control("TI-6")
def test_service_role_uses_justified(evidence, assay_config: Config):
    scan = scan_config(assay_config)
    marker = assay_config.service_role.marker
    evidence.observe("inventory", [use.to_dict() for use in scan.uses])
    evidence.examined_count("source files", scan.files)
    evidence.examined_count("service-role uses", len(scan.uses))
    for use in scan.unjustified():
        reason = (
            "its justification comment is empty"
            if use.marker_line
            else f"no `{marker}` comment on the line or just above it"
        )
        evidence.add(
            Finding(
                control="TI-6",
                rule="service-role-unjustified",
                message=f"service-role use ({use.pattern}) without a justification: {reason}",
                file=use.file,
                line=use.line,
                fix=(
                    f"Add a comment `{marker} <why this call must bypass row level "
                    "security>` at the call, or use the signed-in user's client"
                ),
                details={"code": use.code, "pattern": use.pattern},
            )
        )
    evidence.verdict()
