"""Inbound webhook controls: provider signers and the probes that attack receivers."""

from assay.webhooks.signers import (
    SIGNERS,
    HmacSigner,
    Location,
    Signer,
    get_signer,
    known_providers,
)

__all__ = [
    "SIGNERS",
    "HmacSigner",
    "Location",
    "Signer",
    "get_signer",
    "known_providers",
]
